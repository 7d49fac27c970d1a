/* pattern: memory with known contents at addresses it prints, for the
 * image tools (extract, diff, core) to find. Before its first tick it
 * prints:
 *   "marker ADDR"        a string in .data: "ckpt pattern marker 0123456789"
 *   "heap ADDR LEN"      LEN bytes of malloc'ed memory ([heap]), byte i =
 *                        pattern_byte(i, 0x5a)
 *   "stack ADDR LEN"     LEN bytes of main's stack frame, byte i =
 *                        pattern_byte(i, 0xa5)
 *   "ticker ADDR"        a long in the heap (its own page, after the
 *                        pattern) that holds the tick number
 * then "tick N" every PATTERN_MS milliseconds (default 100) from main and
 * a second thread sleeping in pattern_worker() with a known ymm15. Every tick it checks the
 * patterns; when STOPFILE (argv[1]) exists it prints "VERDICT OK tick N"
 * or "VERDICT FAIL <why>" and exits. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HEAP_LEN (48 * 1024)
#define STACK_LEN (16 * 1024)

char marker[64] = "ckpt pattern marker 0123456789";
static volatile int worker_ticks;

static unsigned char pattern_byte(size_t i, unsigned char seed) {
    return (unsigned char)((i * 131 + (i >> 12) * 7 + seed) & 0xff);
}

/* Held in ymm15 while pattern_worker sleeps (when the CPU has AVX), for
 * gdb to find in a core file. */
static const unsigned long ymm_value[4] __attribute__((aligned(32))) = {
    0x1122334455667788UL, 0x0102030405060708UL, 0x99aabbccddeeff00UL, 0x0f0e0d0c0b0a0908UL};

static void *pattern_worker(void *a) {
    (void)a;
    int avx = __builtin_cpu_supports("avx");
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        if (avx) __asm__ volatile("vmovdqa %0, %%ymm15" : : "m"(ymm_value) : "xmm15");
        nanosleep(&ts, NULL);
        worker_ticks++;
    }
    return NULL;
}

static const char *check(const unsigned char *heap, const volatile unsigned char *stack) {
    for (size_t i = 0; i < HEAP_LEN; i++)
        if (heap[i] != pattern_byte(i, 0x5a)) return "heap pattern changed";
    for (size_t i = 0; i < STACK_LEN; i++)
        if (stack[i] != pattern_byte(i, 0xa5)) return "stack pattern changed";
    if (strcmp(marker, "ckpt pattern marker 0123456789") != 0) return "marker changed";
    return NULL;
}

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *ms_env = getenv("PATTERN_MS");
    long ms = ms_env ? atol(ms_env) : 100;
    setvbuf(stdout, NULL, _IOLBF, 0);
    volatile unsigned char stack[STACK_LEN];
    /* The pattern, then the ticker on a page of its own. */
    unsigned char *heap = malloc(HEAP_LEN + 2 * 4096);
    if (!heap) return 1;
    for (size_t i = 0; i < HEAP_LEN; i++) heap[i] = pattern_byte(i, 0x5a);
    for (size_t i = 0; i < STACK_LEN; i++) stack[i] = pattern_byte(i, 0xa5);
    volatile long *ticker =
        (volatile long *)(((unsigned long)(heap + HEAP_LEN) + 4095) & ~4095UL);
    *ticker = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, pattern_worker, NULL) != 0) return 1;
    printf("marker %p\n", (void *)marker);
    printf("heap %p %d\n", (void *)heap, HEAP_LEN);
    printf("stack %p %d\n", (void *)stack, STACK_LEN);
    printf("ticker %p\n", (void *)ticker);
    for (long n = 1;; n++) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (*ticker != n - 1) {
            printf("VERDICT FAIL ticker %ld, expected %ld\n", *ticker, n - 1);
            return 1;
        }
        *ticker = n;
        const char *bad = check(heap, stack);
        if (bad) {
            printf("VERDICT FAIL %s\n", bad);
            return 1;
        }
        printf("tick %ld\n", n);
        if (access(stopfile, F_OK) == 0) {
            printf("VERDICT OK tick %ld worker %d\n", n, worker_ticks);
            return 0;
        }
    }
}
