/* sigblock: 3 threads that block every signal with pthread_sigmask and
 * spin, 3 threads looping malloc/free of varying sizes with pattern
 * checks. Main prints "tick N" every 200 ms; when STOPFILE (argv[1])
 * exists it checks every thread still moves and still has its full mask,
 * then prints "VERDICT OK" or "VERDICT FAIL <why>". */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long progress[6];
static volatile int mask_ok[3] = {1, 1, 1};
static volatile int heap_ok = 1;

static void *masked(void *a) {
    long id = (long)a;
    sigset_t all, cur;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);
    for (;;) {
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        /* SIGUSR1, SIGTERM and SIGINT must stay blocked as asked. */
        if (!sigismember(&cur, SIGUSR1) || !sigismember(&cur, SIGTERM) || !sigismember(&cur, SIGINT))
            mask_ok[id] = 0;
        progress[id]++;
        usleep(1000);
    }
    return NULL;
}

static void *mallocer(void *a) {
    long id = (long)a;
    unsigned seed = (unsigned)id * 7919u;
    for (;;) {
        size_t n = 16 + (rand_r(&seed) % 200000);
        unsigned char *p = malloc(n);
        if (!p) continue;
        memset(p, (int)(n & 0xff), n);
        for (size_t i = 0; i < n; i += 997)
            if (p[i] != (unsigned char)(n & 0xff)) heap_ok = 0;
        free(p);
        progress[id]++;
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t;
    for (long i = 0; i < 3; i++) pthread_create(&t, NULL, masked, (void *)i);
    for (long i = 3; i < 6; i++) pthread_create(&t, NULL, mallocer, (void *)i);
    for (long n = 1;; n++) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("tick %ld\n", n);
        if (access(stop, F_OK) == 0) break;
    }
    long before[6];
    for (int i = 0; i < 6; i++) before[i] = progress[i];
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    for (int i = 0; i < 6; i++)
        if (progress[i] <= before[i]) {
            printf("VERDICT FAIL thread %d is stuck\n", i);
            return 1;
        }
    for (int i = 0; i < 3; i++)
        if (!mask_ok[i]) {
            printf("VERDICT FAIL thread %d lost its signal mask\n", i);
            return 1;
        }
    if (!heap_ok) {
        printf("VERDICT FAIL heap pattern corrupt\n");
        return 1;
    }
    printf("VERDICT OK\n");
    return 0;
}
