/* jobctl: a job of an interactive shell. Every TICK_MS (200) ms it
 * prints
 *   job pid=<pid> pgid=<getpgrp()> fg=<1 if tcgetpgrp(0) is its group> n=<n>
 * and after a SIGCONT (fg, bg) once
 *   continued pid=<pid>
 * It runs until killed (^C). */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t continued;

static void on_cont(int sig) {
    (void)sig;
    continued = 1;
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {0};
    sa.sa_handler = on_cont;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCONT, &sa, NULL);
    for (long n = 0;; n++) {
        if (continued) {
            continued = 0;
            printf("continued pid=%d\n", getpid());
        }
        printf("job pid=%d pgid=%d fg=%d n=%ld\n", getpid(), getpgrp(),
               tcgetpgrp(0) == getpgrp(), n);
        struct timespec ts = {0, 200 * 1000000L};
        nanosleep(&ts, NULL);
    }
}
