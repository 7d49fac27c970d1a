/* forktree: a process tree. The parent forks child1 and child2; child1
 * forks a grandchild. Every process prints, every TICK_MS (100) ms,
 *   tick <role> pid=<pid> ppid=<ppid> n=<n>
 * and checks that getpid() and getppid() are what they were when it
 * started (the parent checks only its pid: after a restart its parent is
 * the new namespace's init). A wrong value prints "VERDICT FAIL ..." and
 * exits 1.
 *
 * With an argument STOPFILE, once that file exists the parent sends
 * SIGUSR1 to its children and waits for each: child2 exits 12; child1
 * sends SIGUSR1 to the grandchild, waits for it (it must exit 13), then
 * exits 11 (or 1 if its own wait failed). The parent prints
 * "VERDICT OK ..." when both exit statuses are right and exits 0. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_now;
static const char *role = "parent";
static pid_t my_pid, my_ppid;
static long n;

static void on_usr1(int sig) {
    (void)sig;
    stop_now = 1;
}

static void nap(void) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
}

/* One tick: print and check our ids. */
static void tick(int check_ppid) {
    pid_t pid = getpid(), ppid = getppid();
    if (pid != my_pid) {
        printf("VERDICT FAIL %s: getpid() is %d, was %d\n", role, pid, my_pid);
        exit(1);
    }
    if (check_ppid && ppid != my_ppid) {
        printf("VERDICT FAIL %s: getppid() is %d, was %d\n", role, ppid, my_ppid);
        exit(1);
    }
    printf("tick %s pid=%d ppid=%d n=%ld\n", role, pid, ppid, ++n);
}

/* Waits for `child` and returns its exit code (-1 when it did not exit). */
static int reap(pid_t child, const char *name) {
    int st;
    pid_t r;
    do {
        r = waitpid(child, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != child) {
        printf("VERDICT FAIL %s: waitpid(%s %d) = %d (%s)\n", role, name, child, r,
               strerror(errno));
        return -1;
    }
    if (!WIFEXITED(st)) {
        printf("VERDICT FAIL %s: %s %d ended with status %#x\n", role, name, child, st);
        return -1;
    }
    return WEXITSTATUS(st);
}

/* A child's life: tick until SIGUSR1. */
static void child_loop(void) {
    while (!stop_now) {
        tick(1);
        nap();
    }
}

static pid_t spawn(const char *name, void (*body)(void)) {
    pid_t parent = getpid();
    pid_t c = fork();
    if (c < 0) {
        printf("VERDICT FAIL fork: %s\n", strerror(errno));
        exit(1);
    }
    if (c == 0) {
        role = name;
        my_pid = getpid();
        my_ppid = parent;
        n = 0;
        body();
        exit(1); /* bodies exit themselves */
    }
    return c;
}

static void grandchild(void) {
    child_loop();
    exit(13);
}

static void child2(void) {
    child_loop();
    exit(12);
}

static void child1(void) {
    pid_t g = spawn("grandchild", grandchild);
    child_loop();
    kill(g, SIGUSR1);
    exit(reap(g, "grandchild") == 13 ? 11 : 1);
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : NULL;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    my_pid = getpid();
    my_ppid = getppid();
    pid_t c1 = spawn("child1", child1);
    pid_t c2 = spawn("child2", child2);
    printf("forked child1=%d child2=%d\n", c1, c2);
    for (;;) {
        tick(0);
        if (stop && access(stop, F_OK) == 0) break;
        nap();
    }
    kill(c1, SIGUSR1);
    kill(c2, SIGUSR1);
    int s1 = reap(c1, "child1");
    int s2 = reap(c2, "child2");
    if (s1 != 11 || s2 != 12) {
        printf("VERDICT FAIL exit statuses child1=%d (want 11) child2=%d (want 12)\n", s1, s2);
        return 1;
    }
    printf("VERDICT OK children reaped with 11 and 12 after %ld ticks\n", n);
    return 0;
}
