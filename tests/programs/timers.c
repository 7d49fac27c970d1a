/* timers: alarm (ITIMER_REAL), ITIMER_VIRTUAL, ITIMER_PROF and POSIX
 * timers: a periodic one (100 ms, SIGRTMIN+1, value 0x1234) that keeps
 * firing, an armed one far away (1000 s, interval 3 s, SIGRTMIN+4), one
 * created and deleted (a gap in the ids) and one left disarmed that is
 * armed only at the end. Main prints "tick N" every 200 ms; when
 * STOPFILE (argv[1]) exists it checks remaining times (within what the
 * program's own clock allows), intervals, that the timer ids it holds
 * still work and that each timer fires with its value, then prints
 * "VERDICT OK" or "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#define ABS(x) ((x) < 0 ? -(x) : (x))
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ALARM_S 600
#define FAR_S 1000

static volatile long fired1, bad1, fired5;
static volatile int val5, code5;
static timer_t t1, t2, tgap, t4;

static void on_t1(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (si->si_value.sival_int != 0x1234 || si->si_code != SI_TIMER || si->si_timerid != (int)(long)t1)
        bad1++;
    fired1++;
}
static void on_t4(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    val5 = si->si_value.sival_int;
    code5 = si->si_code;
    fired5++;
}

static double now_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}
static double tv(struct timeval t) { return t.tv_sec + t.tv_usec / 1e6; }
static double ts_(struct timespec t) { return t.tv_sec + t.tv_nsec / 1e9; }

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static timer_t mk(clockid_t clock, int sig, int val) {
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_int = val;
    timer_t t;
    if (timer_create(clock, &ev, &t) != 0) {
        printf("VERDICT FAIL timer_create: %s\n", strerror(errno));
        exit(1);
    }
    return t;
}

static void arm(timer_t t, double first, double interval) {
    struct itimerspec it = {{(time_t)interval, (long)((interval - (time_t)interval) * 1e9)},
                            {(time_t)first, (long)((first - (time_t)first) * 1e9)}};
    if (timer_settime(t, 0, &it, NULL) != 0) {
        printf("VERDICT FAIL timer_settime: %s\n", strerror(errno));
        exit(1);
    }
}

#define FAIL(...) do { printf("VERDICT FAIL " __VA_ARGS__); printf("\n"); return 1; } while (0)

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sa.sa_sigaction = on_t1;
    sigaction(SIGRTMIN + 1, &sa, NULL);
    sa.sa_sigaction = on_t4;
    sigaction(SIGRTMIN + 5, &sa, NULL);

    double wall0 = now_s(CLOCK_REALTIME);
    alarm(ALARM_S);
    struct itimerval iv = {{2, 0}, {500, 0}};
    setitimer(ITIMER_VIRTUAL, &iv, NULL);
    struct itimerval ip = {{3, 250000}, {400, 0}};
    setitimer(ITIMER_PROF, &ip, NULL);

    t1 = mk(CLOCK_MONOTONIC, SIGRTMIN + 1, 0x1234);
    tgap = mk(CLOCK_MONOTONIC, SIGRTMIN + 1, 0);
    t2 = mk(CLOCK_REALTIME, SIGRTMIN + 4, 77);
    t4 = mk(CLOCK_MONOTONIC, SIGRTMIN + 5, 99);
    timer_delete(tgap);
    arm(t1, 0.1, 0.1);
    arm(t2, FAR_S, 3);
    printf("timers %ld %ld %ld\n", (long)t1, (long)t2, (long)t4);

    long ticks = 0;
    for (long n = 1;; n++) {
        sleep_ms(200);
        ticks = n;
        printf("tick %ld fired %ld\n", n, fired1);
        if (access(stop, F_OK) == 0) break;
    }
    /* The process lived at least ticks * 0.2 s and at most the wall
     * time since it started (less: it was dead between kill and restart,
     * and timers do not run then). */
    double live = ticks * 0.2, wall = now_s(CLOCK_REALTIME) - wall0;

    struct itimerval r;
    getitimer(ITIMER_REAL, &r);
    if (tv(r.it_interval) != 0 || tv(r.it_value) <= 0 || tv(r.it_value) > ALARM_S - live + 1 ||
        tv(r.it_value) < ALARM_S - wall - 2)
        FAIL("alarm: %.3f s left (interval %.3f), want between %.1f and %.1f", tv(r.it_value),
             tv(r.it_interval), ALARM_S - wall - 2, ALARM_S - live + 1);
    getitimer(ITIMER_VIRTUAL, &r);
    if (ABS(tv(r.it_interval) - 2) > 0.01 || tv(r.it_value) <= 490 || tv(r.it_value) > 500.01)
        FAIL("ITIMER_VIRTUAL %.3f s left interval %.3f, want (490, 500] and 2", tv(r.it_value),
             tv(r.it_interval));
    getitimer(ITIMER_PROF, &r);
    if (ABS(tv(r.it_interval) - 3.25) > 0.01 || tv(r.it_value) <= 390 || tv(r.it_value) > 400.01)
        FAIL("ITIMER_PROF %.3f s left interval %.3f, want (390, 400] and 3.25", tv(r.it_value),
             tv(r.it_interval));

    struct itimerspec its;
    if (timer_gettime(t1, &its) != 0) FAIL("timer_gettime(t1 = %ld): %s", (long)t1, strerror(errno));
    if (ts_(its.it_interval) < 0.0999 || ts_(its.it_interval) > 0.1001 || ts_(its.it_value) <= 0)
        FAIL("t1 interval %.6f value %.6f, want 0.1 and > 0", ts_(its.it_interval), ts_(its.it_value));
    if (timer_gettime(t2, &its) != 0) FAIL("timer_gettime(t2 = %ld): %s", (long)t2, strerror(errno));
    if (ts_(its.it_interval) != 3 || ts_(its.it_value) > FAR_S - live + 1 || ts_(its.it_value) < FAR_S - wall - 2)
        FAIL("t2 interval %.3f value %.3f, want 3 and between %.1f and %.1f", ts_(its.it_interval),
             ts_(its.it_value), FAR_S - wall - 2, FAR_S - live + 1);
    if (timer_gettime(t4, &its) != 0) FAIL("timer_gettime(t4 = %ld): %s", (long)t4, strerror(errno));
    if (ts_(its.it_value) != 0 || ts_(its.it_interval) != 0) FAIL("t4 is armed: %.3f", ts_(its.it_value));
    if (timer_gettime(tgap, &its) == 0) FAIL("the deleted timer %ld exists", (long)tgap);

    long f0 = fired1;
    sleep_ms(500);
    if (fired1 < f0 + 2) FAIL("t1 fired %ld times in 500 ms", fired1 - f0);
    if (bad1) FAIL("t1 fired %ld times with a wrong value, code or timer id", bad1);
    arm(t4, 0.05, 0);
    for (int i = 0; i < 100 && !fired5; i++) sleep_ms(10);
    if (fired5 != 1 || val5 != 99 || code5 != SI_TIMER)
        FAIL("t4 fired %ld times value %d code %d, want 1, 99, %d", fired5, val5, code5, SI_TIMER);
    if (timer_delete(t1) != 0 || timer_delete(t2) != 0 || timer_delete(t4) != 0)
        FAIL("timer_delete: %s", strerror(errno));
    printf("VERDICT OK\n");
    return 0;
}
