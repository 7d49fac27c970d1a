/* heap1g: fills HEAP_MB MiB (default 1024) of heap with a per-page
 * pattern, prints "tick N" every 200 ms while touching a few pages, and
 * when STOPFILE (argv[1]) exists verifies every page and prints
 * "VERDICT OK pages=N" or "VERDICT FAIL <why>". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    const char *mb_env = getenv("HEAP_MB");
    long mb = mb_env ? atol(mb_env) : 1024;
    long page = sysconf(_SC_PAGESIZE);
    long len = mb << 20, pages = len / page;
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned long *heap = malloc(len);
    if (!heap) {
        printf("VERDICT FAIL malloc of %ld MiB\n", mb);
        return 1;
    }
    long words = page / sizeof(unsigned long);
    /* every page: its index in word 0, a seed-derived value elsewhere at a few spots */
    for (long p = 0; p < pages; p++) {
        unsigned long *w = heap + p * words;
        w[0] = (unsigned long)p;
        w[1] = (unsigned long)p * 0x9E3779B97F4A7C15UL;
        w[words - 1] = ~(unsigned long)p;
    }
    unsigned long generation = 0; /* bumped in the first word of page (gen % pages) */
    printf("ready %ld pages\n", pages);
    for (long n = 1;; n++) {
        generation++;
        long p = (long)(generation % pages);
        heap[p * words + 2] = generation;
        printf("tick %ld\n", n);
        if (access(stop, F_OK) == 0) {
            for (long q = 0; q < pages; q++) {
                unsigned long *w = heap + q * words;
                if (w[0] != (unsigned long)q || w[1] != (unsigned long)q * 0x9E3779B97F4A7C15UL ||
                    w[words - 1] != ~(unsigned long)q) {
                    printf("VERDICT FAIL page %ld of %ld corrupt\n", q, pages);
                    return 1;
                }
            }
            if (heap[p * words + 2] != generation) {
                printf("VERDICT FAIL last write lost\n");
                return 1;
            }
            printf("VERDICT OK pages=%ld\n", pages);
            return 0;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
