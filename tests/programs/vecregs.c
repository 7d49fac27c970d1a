/* vecregs: vector registers survive checkpoints and restarts.
 * One thread holds a known pattern in ymm15 (the AVX state component) and
 * checks it, inside one asm loop that calls nothing, millions of times a
 * tick; with AVX-512, another holds one in zmm31 (the Hi16_ZMM component)
 * and k1 (opmask). Only a signal delivery and return (the checkpoint) or a
 * restore can change them there: a restorer that put back only the legacy
 * x87/SSE area would zero their upper parts. Prints "tick N ymm=OK,BAD
 * zmm=OK,BAD" every 100 ms, "VERDICT FAIL ..." at once on a mismatch, and
 * when STOPFILE (argv[1]) exists "VERDICT OK". Each tick also checks the
 * thread names (comm): the process's own and the two named threads'. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Alignas(64) uint8_t ypat[32];
static _Alignas(64) uint8_t zpat[64];
static atomic_long yok, ybad, zok, zbad;
static atomic_int ytid, ztid;

/* The comm of thread tid ("" if unreadable). */
static void comm_of(int tid, char *out, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", tid);
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f) return;
    if (fgets(out, (int)n, f)) out[strcspn(out, "\n")] = 0;
    fclose(f);
}

/* Fails unless thread tid is called want. */
static void check_comm(int tid, const char *want) {
    char got[32];
    if (tid <= 0) return;
    comm_of(tid, got, sizeof got);
    if (strcmp(got, want)) {
        printf("VERDICT FAIL thread %d is called \"%s\", not \"%s\"\n", tid, got, want);
        exit(1);
    }
}

static long spin_ymm(long iters) {
    long bad = 0;
    __asm__ volatile("vmovdqu (%[p]), %%ymm15\n"
                     "1:\n\t"
                     "vpcmpeqb (%[p]), %%ymm15, %%ymm14\n\t"
                     "vpmovmskb %%ymm14, %%eax\n\t"
                     "cmp $-1, %%eax\n\t"
                     "je 2f\n\t"
                     "inc %[bad]\n\t"
                     "vmovdqu (%[p]), %%ymm15\n"
                     "2:\n\t"
                     "dec %[n]\n\t"
                     "jnz 1b\n\t"
                     "vzeroupper\n"
                     : [bad] "+r"(bad), [n] "+r"(iters)
                     : [p] "r"(ypat)
                     : "rax", "xmm14", "xmm15", "memory", "cc");
    return bad;
}

__attribute__((target("avx512f"))) static long spin_zmm(long iters) {
    long bad = 0;
    __asm__ volatile("vmovdqu64 (%[p]), %%zmm31\n\t"
                     "kxnorw %%k1, %%k1, %%k1\n"
                     "1:\n\t"
                     "vpcmpeqq (%[p]), %%zmm31, %%k2\n\t"
                     "kmovw %%k2, %%eax\n\t"
                     "kmovw %%k1, %%ecx\n\t"
                     "and %%ecx, %%eax\n\t"
                     "cmp $0xff, %%eax\n\t"
                     "je 2f\n\t"
                     "inc %[bad]\n\t"
                     "vmovdqu64 (%[p]), %%zmm31\n\t"
                     "kxnorw %%k1, %%k1, %%k1\n"
                     "2:\n\t"
                     "dec %[n]\n\t"
                     "jnz 1b\n\t"
                     "vzeroupper\n"
                     : [bad] "+r"(bad), [n] "+r"(iters)
                     : [p] "r"(zpat)
                     : "rax", "rcx", "xmm31", "k1", "k2", "memory", "cc");
    return bad;
}

static void *ymm_thread(void *a) {
    pthread_setname_np(pthread_self(), "vec-ymm");
    atomic_store(&ytid, (int)syscall(SYS_gettid));
    for (;;) {
        long bad = spin_ymm(1 << 22);
        atomic_fetch_add(&yok, 1);
        if (bad) atomic_fetch_add(&ybad, bad);
    }
    return a;
}

static void *zmm_thread(void *a) {
    pthread_setname_np(pthread_self(), "vec-zmm");
    atomic_store(&ztid, (int)syscall(SYS_gettid));
    for (;;) {
        long bad = spin_zmm(1 << 22);
        atomic_fetch_add(&zok, 1);
        if (bad) atomic_fetch_add(&zbad, bad);
    }
    return a;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < 32; i++) ypat[i] = (uint8_t)(0xa5 ^ (i * 37));
    for (int i = 0; i < 64; i++) zpat[i] = (uint8_t)(0x3c ^ (i * 53));
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) {
        printf("VERDICT OK (no AVX2 on this CPU: nothing to check)\n");
        return 0;
    }
    int avx512 = __builtin_cpu_supports("avx512f");
    pthread_t t;
    pthread_create(&t, NULL, ymm_thread, NULL);
    if (avx512) pthread_create(&t, NULL, zmm_thread, NULL);
    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long yb = atomic_load(&ybad), zb = atomic_load(&zbad);
        if (yb || zb) {
            printf("VERDICT FAIL vector registers changed: ymm15 %ld times, zmm31/k1 %ld times\n", yb, zb);
            return 1;
        }
        check_comm(getpid(), "vecregs");
        check_comm(atomic_load(&ytid), "vec-ymm");
        check_comm(atomic_load(&ztid), "vec-zmm");
        printf("tick %ld ymm=%ld,%ld zmm=%ld,%ld%s\n", n, atomic_load(&yok), yb, atomic_load(&zok), zb,
               avx512 ? "" : " (no AVX-512)");
        if (access(stop, F_OK) == 0) {
            printf("VERDICT OK\n");
            return 0;
        }
    }
}
