/* tree50: a tree of 50 processes: the root forks 7 children and each of
 * them forks 6 leaves (1 + 7 + 42). Every process checks, every 100 ms,
 * that getpid() and getppid() are what they were (the root only its pid;
 * a wrong value prints
 * "VERDICT FAIL ..." and exits 1); the root prints
 *   tick root n=<n>
 * Once STOPFILE exists every leaf exits 7; each child waits for its six
 * leaves and exits 20 + the number that exited 7; the root waits for its
 * seven children and prints "VERDICT OK 49 descendants" when each exited
 * 26, "VERDICT FAIL ..." otherwise. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { CHILDREN = 7, LEAVES = 6 };

static const char *stopfile;

static void nap(void) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
}

/* Ticks until the stop file exists, checking our ids (the root only its
 * pid: after a restart its parent is the new namespace's init). */
static void live(const char *role, int print) {
    pid_t pid = getpid(), ppid = print ? 1 : getppid();
    long n = 0;
    while (access(stopfile, F_OK) != 0) {
        if (getpid() != pid || (ppid != 1 && getppid() != ppid)) {
            printf("VERDICT FAIL %s %d: pid %d ppid %d, were %d %d\n", role, pid, getpid(),
                   getppid(), pid, ppid);
            fflush(stdout);
            exit(1);
        }
        if (print) {
            printf("tick %s n=%ld\n", role, ++n);
            fflush(stdout);
        }
        nap();
    }
}

static int reap(pid_t c) {
    int st;
    pid_t r;
    do r = waitpid(c, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r != c) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void child(void) {
    pid_t leaves[LEAVES];
    for (int i = 0; i < LEAVES; i++) {
        leaves[i] = fork();
        if (leaves[i] == 0) {
            live("leaf", 0);
            exit(7);
        }
    }
    live("child", 0);
    int good = 0;
    for (int i = 0; i < LEAVES; i++) good += reap(leaves[i]) == 7;
    exit(20 + good);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    stopfile = argv[1];
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t kids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++) {
        kids[i] = fork();
        if (kids[i] == 0) child();
    }
    live("root", 1);
    int ok = 1;
    for (int i = 0; i < CHILDREN; i++) {
        int code = reap(kids[i]);
        if (code != 20 + LEAVES) {
            printf("VERDICT FAIL child %d exited %d\n", kids[i], code);
            ok = 0;
        }
    }
    if (ok) printf("VERDICT OK %d descendants\n", CHILDREN * (1 + LEAVES));
    return ok ? 0 : 1;
}
