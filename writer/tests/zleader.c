/* Test program: main calls pthread_exit; a second thread ticks. The
 * process's /proc/self is then a zombie's (no maps, fds, cwd). */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static const char *stop;

static void *ticker(void *arg) {
    (void)arg;
    for (long n = 1;; n++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("tick %ld ok\n", n);
        if (access(stop, F_OK) == 0) _exit(0);
    }
    return NULL;
}

int main(int argc, char **argv) {
    stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    pthread_exit(NULL);
}
