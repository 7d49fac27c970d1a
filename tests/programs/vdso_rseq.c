/* vdso_rseq: every 200 ms checks that CLOCK_MONOTONIC increased, that
 * CLOCK_REALTIME and gettimeofday agree, that sched_getcpu is a valid cpu
 * and that glibc's rseq area is registered (cpu_id >= 0); prints
 * "tick N cpu=C". When STOPFILE (argv[1]) exists: "VERDICT OK" or
 * "VERDICT FAIL <why>" (a failure is also reported at once). */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/rseq.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    struct timespec last = {0, 0};
    for (long n = 1;; n++) {
        struct timespec now, rt;
        struct timeval tv;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_nsec <= last.tv_nsec)) {
            printf("VERDICT FAIL CLOCK_MONOTONIC went back: %ld.%09ld after %ld.%09ld\n", (long)now.tv_sec,
                   now.tv_nsec, (long)last.tv_sec, last.tv_nsec);
            return 1;
        }
        last = now;
        clock_gettime(CLOCK_REALTIME, &rt);
        gettimeofday(&tv, NULL);
        if (labs((long)tv.tv_sec - (long)rt.tv_sec) > 2) {
            printf("VERDICT FAIL gettimeofday and CLOCK_REALTIME disagree\n");
            return 1;
        }
        int cpu = sched_getcpu();
        if (cpu < 0 || cpu >= ncpu) {
            printf("VERDICT FAIL sched_getcpu returned %d\n", cpu);
            return 1;
        }
        if (__rseq_size > 0) {
            struct rseq *rs = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
            int rcpu = (int)rs->cpu_id;
            if (rcpu < 0 || rcpu >= ncpu) {
                printf("VERDICT FAIL rseq cpu_id is %d (not registered)\n", rcpu);
                return 1;
            }
        }
        printf("tick %ld cpu=%d\n", n, cpu);
        if (access(stop, F_OK) == 0) {
            printf("VERDICT OK\n");
            return 0;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
