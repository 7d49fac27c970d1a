/* stopped: a child stopped by a signal at checkpoint time. Usage:
 * stopped DIR STOPFILE.
 *
 * The parent P forks a child C that prints, every TICK_MS (100) ms,
 *   tick child pid=<pid> n=<n>
 * until STOPFILE exists, then exits 0. P prints, every TICK_MS,
 *   tick parent child=<C's state letter from /proc/C/stat> n=<n>
 * and what waitpid(C, WUNTRACED | WCONTINUED | WNOHANG) reports:
 *   event stopped sig=<WSTOPSIG>      event continued
 * When DIR/stop-child exists (once), P sends C SIGTSTP (as ^Z would);
 * when DIR/cont-child exists (once), SIGCONT. When STOPFILE exists P
 * waits for C: it must exit 0; P prints "VERDICT OK ..." and exits 0, or
 * "VERDICT FAIL <why>" and exits 1. */
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

static char state_of(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && close[1] == ' ' ? close[2] : '?';
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: stopped DIR STOPFILE\n");
        return 2;
    }
    const char *stop = argv[2];
    char stop_child[4096], cont_child[4096];
    snprintf(stop_child, sizeof stop_child, "%s/stop-child", argv[1]);
    snprintf(cont_child, sizeof cont_child, "%s/cont-child", argv[1]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pid_t c = fork();
    if (c < 0)
        return 2;
    if (c == 0) {
        for (long n = 0; access(stop, F_OK) != 0; n++) {
            printf("tick child pid=%d n=%ld\n", getpid(), n);
            nap();
        }
        _exit(0);
    }
    int stopped_it = 0, continued_it = 0;
    for (long n = 0; access(stop, F_OK) != 0; n++) {
        int st;
        pid_t r;
        while ((r = waitpid(c, &st, WUNTRACED | WCONTINUED | WNOHANG)) == c) {
            if (WIFSTOPPED(st))
                printf("event stopped sig=%d\n", WSTOPSIG(st));
            else if (WIFCONTINUED(st))
                printf("event continued\n");
            else {
                printf("VERDICT FAIL the child ended early: status %#x\n", st);
                return 1;
            }
        }
        if (!stopped_it && access(stop_child, F_OK) == 0) {
            stopped_it = 1;
            kill(c, SIGTSTP);
        }
        if (!continued_it && access(cont_child, F_OK) == 0) {
            continued_it = 1;
            kill(c, SIGCONT);
        }
        printf("tick parent child=%c n=%ld\n", state_of(c), n);
        nap();
    }
    int st;
    pid_t r;
    do {
        r = waitpid(c, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("VERDICT FAIL the child: waitpid %d status %#x\n", r, st);
        return 1;
    }
    printf("VERDICT OK stopped=%d continued=%d\n", stopped_it, continued_it);
    return 0;
}
