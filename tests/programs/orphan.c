/* orphan: a process whose parent exited. Usage: orphan MODE STOPFILE,
 * MODE "init" or "subreaper".
 *
 * The launched process P (with MODE subreaper, a child subreaper:
 * prctl PR_SET_CHILD_SUBREAPER) forks C, C forks G and exits with status
 * 3, P reaps C. G, an orphan now, waits until it is reparented (to P with
 * subreaper; otherwise to init or whatever subreaper is above P), prints
 *   orphan pid=<pid> ppid=<getppid()>
 * and both print, every TICK_MS (100) ms,
 *   tick parent pid=<pid> n=<n>
 *   tick orphan pid=<pid> ppid=<getppid()> n=<n>
 * until STOPFILE exists. Then G exits 0; with subreaper, P must still be
 * a subreaper, reap G (status 0), and a new orphan (C2 forks G2 and
 * exits) must be reparented to P too (G2 exits 0 if its getppid() is P,
 * 1 otherwise, and P reaps it); with init, P waits (at most 5 s) until G
 * is gone. P prints "VERDICT OK ..." and exits 0, or "VERDICT FAIL
 * <why>" and exits 1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int reap(pid_t pid, int want) {
    int st;
    pid_t r;
    do {
        r = waitpid(pid, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != pid || !WIFEXITED(st) || WEXITSTATUS(st) != want) {
        printf("VERDICT FAIL waitpid(%d) = %d (%s), status %#x, want exit %d\n", pid, r,
               r < 0 ? strerror(errno) : "", r == pid ? st : 0, want);
        return -1;
    }
    return 0;
}

/* Forks a child that forks an orphan and exits with 3; returns the
 * orphan's pid (read from a pipe) after reaping the child. The orphan
 * runs `orphan_main(parent_at_fork)`. */
static pid_t make_orphan(int (*orphan_main)(pid_t), pid_t *child) {
    int p[2];
    if (pipe(p))
        return -1;
    pid_t c = fork();
    if (c == 0) {
        pid_t me = getpid();
        pid_t g = fork();
        if (g == 0) {
            close(p[0]);
            close(p[1]);
            _exit(orphan_main(me));
        }
        if (write(p[1], &g, sizeof g) != sizeof g)
            _exit(2);
        _exit(3);
    }
    close(p[1]);
    pid_t g = -1;
    if (read(p[0], &g, sizeof g) != sizeof g)
        g = -1;
    close(p[0]);
    *child = c;
    return g;
}

static const char *stop;

static int orphan_run(pid_t old_parent) {
    while (getppid() == old_parent)
        nap(10);
    printf("orphan pid=%d ppid=%d\n", getpid(), getppid());
    for (long n = 0; access(stop, F_OK) != 0; n++) {
        printf("tick orphan pid=%d ppid=%d n=%ld\n", getpid(), getppid(), n);
        nap(100);
    }
    return 0;
}

static pid_t reaper;

/* The second orphan, made after the restarts: reparented to P? */
static int orphan_check(pid_t old_parent) {
    for (int i = 0; i < 500 && getppid() == old_parent; i++)
        nap(10);
    return getppid() == reaper ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: orphan init|subreaper STOPFILE\n");
        return 2;
    }
    int sub = strcmp(argv[1], "subreaper") == 0;
    stop = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    reaper = getpid();
    if (sub && prctl(PR_SET_CHILD_SUBREAPER, 1)) {
        printf("VERDICT FAIL PR_SET_CHILD_SUBREAPER: %s\n", strerror(errno));
        return 1;
    }
    pid_t c;
    pid_t g = make_orphan(orphan_run, &c);
    if (g < 0 || reap(c, 3))
        return 1;
    for (long n = 0; access(stop, F_OK) != 0; n++) {
        printf("tick parent pid=%d n=%ld\n", getpid(), n);
        nap(100);
    }
    if (!sub) {
        for (int i = 0; i < 250 && kill(g, 0) == 0; i++)
            nap(20);
        if (kill(g, 0) == 0) {
            printf("VERDICT FAIL the orphan %d did not end\n", g);
            return 1;
        }
        printf("VERDICT OK orphan=%d\n", g);
        return 0;
    }
    int is = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, &is) || !is) {
        printf("VERDICT FAIL no longer a child subreaper\n");
        return 1;
    }
    if (reap(g, 0))
        return 1;
    pid_t g2 = make_orphan(orphan_check, &c);
    if (g2 < 0 || reap(c, 3))
        return 1;
    if (reap(g2, 0)) {
        printf("VERDICT FAIL a new orphan was not reparented to the subreaper\n");
        return 1;
    }
    printf("VERDICT OK orphan=%d\n", g);
    return 0;
}
