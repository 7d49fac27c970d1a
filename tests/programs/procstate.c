/* procstate: a lowered RLIMIT_NOFILE soft limit and RLIMIT_CORE limits,
 * umask 027, cwd in a directory made under WORKDIR (argv[2]),
 * personality with ADDR_NO_RANDOMIZE, SCHED_BATCH and nice +5. Main
 * prints "tick N" every 200 ms; when STOPFILE (argv[1]) exists it checks
 * each one is still as it set it and prints "VERDICT OK" or
 * "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...) do { printf("VERDICT FAIL " __VA_ARGS__); printf("\n"); return 1; } while (0)

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    const char *work = argc > 2 ? argv[2] : "/tmp";
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct rlimit nofile, core;
    getrlimit(RLIMIT_NOFILE, &nofile);
    nofile.rlim_cur = 200;
    if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) FAIL("setrlimit(NOFILE): %s", strerror(errno));
    getrlimit(RLIMIT_CORE, &core);
    core.rlim_cur = 12345 * 4096;
    if (core.rlim_max != RLIM_INFINITY && core.rlim_max < core.rlim_cur) core.rlim_cur = core.rlim_max;
    else core.rlim_max = 1 << 30;
    if (setrlimit(RLIMIT_CORE, &core) != 0) FAIL("setrlimit(CORE): %s", strerror(errno));
    umask(027);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/procstate-cwd", work);
    mkdir(dir, 0755);
    if (chdir(dir) != 0) FAIL("chdir %s: %s", dir, strerror(errno));
    char cwd0[4096];
    if (!getcwd(cwd0, sizeof cwd0)) FAIL("getcwd: %s", strerror(errno));
    int pers = personality(0xffffffff);
    if (personality(pers | ADDR_NO_RANDOMIZE) == -1) FAIL("personality: %s", strerror(errno));
    pers = personality(0xffffffff);
    struct sched_param sp = {0};
    if (sched_setscheduler(0, SCHED_BATCH, &sp) != 0) FAIL("sched_setscheduler: %s", strerror(errno));
    errno = 0;
    int nice0 = getpriority(PRIO_PROCESS, 0);
    if (setpriority(PRIO_PROCESS, 0, nice0 + 5) != 0) FAIL("setpriority: %s", strerror(errno));
    int nice1 = getpriority(PRIO_PROCESS, 0);

    for (long n = 1;; n++) {
        sleep_ms(200);
        printf("tick %ld\n", n);
        if (access(stop, F_OK) == 0) break;
    }

    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_cur != nofile.rlim_cur || r.rlim_max != nofile.rlim_max)
        FAIL("RLIMIT_NOFILE %llu/%llu, want %llu/%llu", (unsigned long long)r.rlim_cur,
             (unsigned long long)r.rlim_max, (unsigned long long)nofile.rlim_cur,
             (unsigned long long)nofile.rlim_max);
    getrlimit(RLIMIT_CORE, &r);
    if (r.rlim_cur != core.rlim_cur || r.rlim_max != core.rlim_max)
        FAIL("RLIMIT_CORE %llu/%llu, want %llu/%llu", (unsigned long long)r.rlim_cur,
             (unsigned long long)r.rlim_max, (unsigned long long)core.rlim_cur,
             (unsigned long long)core.rlim_max);
    mode_t m = umask(0);
    umask(m);
    if (m != 027) FAIL("umask %03o, want 027", m);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) FAIL("getcwd: %s", strerror(errno));
    if (strcmp(cwd, cwd0) != 0) FAIL("cwd %s, want %s", cwd, cwd0);
    int p = personality(0xffffffff);
    if (p != pers) FAIL("personality %#x, want %#x", p, pers);
    int pol = sched_getscheduler(0);
    if (pol != SCHED_BATCH) FAIL("scheduling policy %d, want SCHED_BATCH (%d)", pol, SCHED_BATCH);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    if (nice != nice1) FAIL("nice %d, want %d", nice, nice1);
    printf("VERDICT OK\n");
    return 0;
}
