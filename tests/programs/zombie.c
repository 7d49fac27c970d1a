/* zombie: children that have exited but are not reaped yet when the
 * checkpoint comes. The parent forks two children: one exits with status
 * 7, the other is killed by SIGTERM. It waits until both are zombies
 * (state Z in /proc/PID/stat), without reaping them, prints
 *   zombies pid1=<pid> pid2=<pid>
 * then, every TICK_MS (100) ms,
 *   tick n=<n>
 * until the file STOPFILE (its argument) exists. Then it reaps both:
 * waitpid() must return each pid, the first with WEXITSTATUS 7, the
 * second killed by SIGTERM. It prints "VERDICT OK ..." and exits 0, or
 * "VERDICT FAIL ..." and exits 1. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void nap(void) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
}

/* The state letter of /proc/PID/stat, or 0. */
static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' ? close[2] : 0;
}

static int reap(pid_t child, int *st) {
    pid_t r;
    do {
        r = waitpid(child, st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != child) {
        printf("VERDICT FAIL waitpid(%d) = %d (%s)\n", child, r, r < 0 ? strerror(errno) : "");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: zombie STOPFILE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t c1 = fork();
    if (c1 < 0)
        return 2;
    if (c1 == 0)
        _exit(7);
    pid_t c2 = fork();
    if (c2 < 0)
        return 2;
    if (c2 == 0) {
        signal(SIGTERM, SIG_DFL);
        raise(SIGTERM);
        _exit(99);
    }
    /* Bounded: 30 s for both to become zombies. */
    for (int i = 0; state_of(c1) != 'Z' || state_of(c2) != 'Z'; i++) {
        if (i > 300) {
            printf("VERDICT FAIL children not zombies: %c %c\n", state_of(c1), state_of(c2));
            return 1;
        }
        nap();
    }
    printf("zombies pid1=%d pid2=%d\n", c1, c2);
    for (long n = 1; access(argv[1], F_OK) != 0; n++) {
        printf("tick n=%ld\n", n);
        nap();
    }
    int s1, s2;
    if (reap(c1, &s1) || reap(c2, &s2))
        return 1;
    if (!WIFEXITED(s1) || WEXITSTATUS(s1) != 7) {
        printf("VERDICT FAIL pid %d: wait status %#x, want exit 7\n", c1, s1);
        return 1;
    }
    if (!WIFSIGNALED(s2) || WTERMSIG(s2) != SIGTERM) {
        printf("VERDICT FAIL pid %d: wait status %#x, want killed by SIGTERM\n", c2, s2);
        return 1;
    }
    printf("VERDICT OK pid %d exited 7, pid %d killed by SIGTERM\n", c1, c2);
    return 0;
}
