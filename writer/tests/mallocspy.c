/* Test program: counts calls to libc's malloc family made by the writer's
 * threads (named "ckpt-*"). During a checkpoint the program's threads may
 * hold malloc's locks, so the writer must never call it. Each tick prints
 * "tick N writer-mallocs M"; worker threads keep malloc busy. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static volatile long writer_mallocs;

static void spy(void) {
    char name[16] = "";
    prctl(PR_GET_NAME, name);
    if (strncmp(name, "ckpt-", 5) == 0) __atomic_add_fetch(&writer_mallocs, 1, __ATOMIC_SEQ_CST);
}

void *malloc(size_t n) { spy(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { spy(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { spy(); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { spy(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { spy(); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) {
    spy();
    *p = __libc_memalign(a, n);
    return *p ? 0 : 12;
}
void free(void *p) { __libc_free(p); }

static void *churn(void *arg) {
    unsigned s = (unsigned)(long)arg;
    void *keep[32] = {0};
    for (;;) {
        s = s * 1103515245 + 12345;
        int k = (s >> 8) % 32;
        free(keep[k]);
        keep[k] = malloc(16 + (s >> 4) % 5000);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t;
    for (long i = 0; i < 24; i++) pthread_create(&t, NULL, churn, (void *)i);
    for (long n = 1;; n++) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("tick %ld writer-mallocs %ld\n", n, writer_mallocs);
        if (access(stop, F_OK) == 0) return 0;
    }
}
