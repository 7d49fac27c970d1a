/* Test program for the writer: a counter ticking every 50 ms, a heap
 * buffer holding a known pattern, and two worker threads. Every tick
 * checks the pattern and the workers' progress and prints "tick N ok". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/mman.h>

#define BUF_LEN (1 << 20)
static char *buf;
static volatile long spins[2];

static void fill(char *p, long len) {
    for (long i = 0; i + 32 <= len; i += 32)
        snprintf(p + i, 33, "CKPT-PATTERN-%018ld", i);
}

static int check(const char *p, long len) {
    char want[33];
    for (long i = 0; i + 32 <= len; i += 32) {
        snprintf(want, 33, "CKPT-PATTERN-%018ld", i);
        if (memcmp(p + i, want, 32) != 0) return 0;
    }
    return 1;
}

static void *short_lived(void *arg) {
    return (void *)((long)arg + 1);
}

static void *worker(void *arg) {
    long id = (long)arg;
    for (;;) {
        spins[id]++;
        usleep(5000);
    }
    return NULL;
}

/* A page the program hides with PROT_NONE: its data must survive. */
static char *hidden;

static int check_hidden(void) {
    mprotect(hidden, 4096, PROT_READ);
    int ok = strcmp(hidden, "hidden behind PROT_NONE") == 0;
    mprotect(hidden, 4096, PROT_NONE);
    return ok;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    hidden = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    hidden += 4096; /* its own mapping once the neighbours differ */
    strcpy(hidden, "hidden behind PROT_NONE");
    mprotect(hidden - 4096, 4096, PROT_READ);
    mprotect(hidden, 4096, PROT_NONE);
    buf = malloc(BUF_LEN);
    fill(buf, BUF_LEN);
    pthread_t t[2];
    for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    long last[2] = {0, 0};
    for (long n = 1;; n++) {
        int ok = check(buf, BUF_LEN);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("tick %ld %s\n", n, ok ? "ok" : "BAD");
        if (n % 10 == 0) {
            /* the workers must still be making progress */
            int moving = spins[0] > last[0] && spins[1] > last[1];
            printf("workers %s\n", moving ? "ok" : "STUCK");
            /* thread creation and pthread_join (clear-child-tid, TLS) */
            pthread_t s;
            void *ret = NULL;
            int joined = pthread_create(&s, NULL, short_lived, (void *)n) == 0 &&
                         pthread_join(s, &ret) == 0 && (long)ret == n + 1;
            printf("join %s\n", joined ? "ok" : "BAD");
            printf("hidden %s\n", check_hidden() ? "ok" : "BAD");
            last[0] = spins[0];
            last[1] = spins[1];
        }
        if (access(stop, F_OK) == 0) return 0;
    }
}
