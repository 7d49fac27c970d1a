/* fdkinds: eventfds, timerfds, signalfds and an epoll set across
 * checkpoints and restarts, each checked by what it does afterwards.
 * Usage: fdkinds STOPFILE KINDS, KINDS a comma list of eventfd,
 * timerfd, signalfd, epoll (epoll watches the fds of the other kinds
 * given).
 *   - eventfd "ev" (close-on-exec) starts at 7 and gains 1 every tick;
 *     "evs" is EFD_SEMAPHORE | EFD_NONBLOCK holding 3.
 *   - timerfd "tlong" (CLOCK_MONOTONIC) 1000 s then every 500 s;
 *     "tper" (CLOCK_MONOTONIC, nonblocking) every 50 ms, read every tick;
 *     "tabs" (CLOCK_REALTIME, TFD_TIMER_ABSTIME) one hour from now;
 *     "tpend" fired once at start and is never read (a tick pending).
 *   - signalfd "sfd" (nonblocking) accepts SIGUSR1 and SIGRTMIN+1 (both
 *     blocked); a SIGRTMIN+1 with value 77 is queued at start.
 *   - epoll "ep" watches ev (EPOLLIN), a pipe read end (EPOLLIN |
 *     EPOLLET), the pipe's write end (EPOLLOUT | EPOLLONESHOT, fired
 *     once before any checkpoint), tper, sfd, and a second epoll set
 *     "ep2" that watches evs; each with its own data.
 * Prints "tick N" every 100 ms; when STOPFILE exists it checks every fd
 * and prints "VERDICT OK" or "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static char why[512];
#define FAIL(...) do { if (!why[0]) snprintf(why, sizeof why, __VA_ARGS__); } while (0)

static int has(const char *kinds, const char *k) {
    size_t n = strlen(k);
    for (const char *p = kinds; (p = strstr(p, k)); p += n)
        if ((p == kinds || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

static void check_flags(const char *name, int fd, int want_nb, int want_cloexec) {
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) { FAIL("%s: fd %d is not open", name, fd); return; }
    if (!!(fl & O_NONBLOCK) != want_nb) FAIL("%s: O_NONBLOCK is %d, not %d", name, !!(fl & O_NONBLOCK), want_nb);
    if (!!(fdfl & FD_CLOEXEC) != want_cloexec) FAIL("%s: FD_CLOEXEC is %d, not %d", name, !!(fdfl & FD_CLOEXEC), want_cloexec);
}

/* The "tfd events data" registrations of an epoll fd, as text. */
static void registrations(int ep, char *out, size_t len) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
    FILE *f = fopen(path, "r");
    out[0] = 0;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        int tfd; unsigned ev; unsigned long long data;
        if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) == 3) {
            size_t u = strlen(out);
            snprintf(out + u, len - u, "%d:%x:%llx ", tfd, ev, data);
        }
    }
    fclose(f);
}

static long long ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *kinds = argc > 2 ? argv[2] : "eventfd,timerfd,signalfd,epoll";
    setvbuf(stdout, NULL, _IOLBF, 0);
    int want_ev = has(kinds, "eventfd"), want_t = has(kinds, "timerfd");
    int want_s = has(kinds, "signalfd"), want_ep = has(kinds, "epoll");
    int ev = -1, evs = -1, tlong = -1, tper = -1, tabs = -1, tpend = -1, sfd = -1;
    int ep = -1, ep2 = -1, p[2] = {-1, -1};
    uint64_t one = 1, v;
    long long abs_deadline = 0;

    if (want_ev) {
        ev = eventfd(7, EFD_CLOEXEC);
        evs = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
        if (ev < 0 || evs < 0) { printf("VERDICT FAIL eventfd: %s\n", strerror(errno)); return 1; }
    }
    if (want_t) {
        tlong = timerfd_create(CLOCK_MONOTONIC, 0);
        tper = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
        tabs = timerfd_create(CLOCK_REALTIME, TFD_CLOEXEC);
        tpend = timerfd_create(CLOCK_MONOTONIC, 0);
        if (tlong < 0 || tper < 0 || tabs < 0 || tpend < 0) { printf("VERDICT FAIL timerfd_create: %s\n", strerror(errno)); return 1; }
        struct itimerspec l = {{500, 0}, {1000, 0}}, per = {{0, 50000000}, {0, 50000000}};
        struct itimerspec pend = {{0, 0}, {0, 1000}};
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        struct itimerspec a = {{0, 0}, {now.tv_sec + 3600, 0}};
        abs_deadline = ns(a.it_value);
        if (timerfd_settime(tlong, 0, &l, NULL) || timerfd_settime(tper, 0, &per, NULL) ||
            timerfd_settime(tabs, TFD_TIMER_ABSTIME, &a, NULL) || timerfd_settime(tpend, 0, &pend, NULL)) {
            printf("VERDICT FAIL timerfd_settime: %s\n", strerror(errno)); return 1;
        }
        struct pollfd pf = {tpend, POLLIN, 0};
        if (poll(&pf, 1, 5000) != 1) { printf("VERDICT FAIL tpend did not fire\n"); return 1; }
    }
    if (want_s) {
        sigset_t m;
        sigemptyset(&m);
        sigaddset(&m, SIGUSR1);
        sigaddset(&m, SIGUSR2);
        sigaddset(&m, SIGRTMIN + 1);
        sigprocmask(SIG_BLOCK, &m, NULL);
        sigdelset(&m, SIGUSR2);
        sfd = signalfd(-1, &m, SFD_NONBLOCK);
        if (sfd < 0) { printf("VERDICT FAIL signalfd: %s\n", strerror(errno)); return 1; }
        union sigval sv = {.sival_int = 77};
        if (sigqueue(getpid(), SIGRTMIN + 1, sv)) { printf("VERDICT FAIL sigqueue: %s\n", strerror(errno)); return 1; }
    }
    char regs_before[2048] = "";
    if (want_ep) {
        ep = epoll_create1(EPOLL_CLOEXEC);
        ep2 = epoll_create1(0);
        if (ep < 0 || ep2 < 0 || pipe(p)) { printf("VERDICT FAIL epoll_create1/pipe: %s\n", strerror(errno)); return 1; }
        struct epoll_event e;
#define ADD(epfd, fd, evmask, d) do { e.events = (evmask); e.data.u64 = (d); \
        if (fd >= 0 && epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e)) { printf("VERDICT FAIL epoll_ctl %s: %s\n", #fd, strerror(errno)); return 1; } } while (0)
        ADD(ep, ev, EPOLLIN, 0x1111000000000001ULL);
        ADD(ep, p[0], EPOLLIN | EPOLLET, 0x2222000000000002ULL);
        ADD(ep, p[1], EPOLLOUT | EPOLLONESHOT, 0x5555000000000005ULL);
        ADD(ep, tper, EPOLLIN, 3);
        ADD(ep, sfd, EPOLLIN | EPOLLRDHUP, 4);
        ADD(ep2, evs, EPOLLIN, 0x6666);
        ADD(ep, ep2, EPOLLIN, 6);
        /* The one-shot write end fires now and is disabled from then on. */
        struct epoll_event got[16];
        int n = epoll_wait(ep, got, 16, 1000), seen5 = 0;
        for (int i = 0; i < n; i++) seen5 |= got[i].data.u64 == 0x5555000000000005ULL;
        if (!seen5) { printf("VERDICT FAIL the one-shot EPOLLOUT did not fire\n"); return 1; }
        registrations(ep, regs_before, sizeof regs_before);
    }

    long ticks = 0, expirations = 0;
    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        ticks++;
        if (ev >= 0 && write(ev, &one, 8) != 8) FAIL("ev: write: %s", strerror(errno));
        if (tper >= 0) {
            ssize_t r = read(tper, &v, 8);
            if (r == 8) expirations += v;
            else if (r < 0 && errno != EAGAIN) FAIL("tper: read: %s", strerror(errno));
        }
        printf("tick %ld\n", ticks);
        if (why[0] || access(stopfile, F_OK) == 0) break;
    }

    if (want_ep && !why[0]) {
        char regs_after[2048];
        registrations(ep, regs_after, sizeof regs_after);
        /* The same registrations, in any order. */
        int same = strlen(regs_before) == strlen(regs_after);
        for (char *tok = regs_before, *sp; same && *tok; tok = sp + 1) {
            sp = strchr(tok, ' ');
            char one[64];
            snprintf(one, sizeof one, " %.*s ", (int)(sp - tok), tok);
            char padded[2100];
            snprintf(padded, sizeof padded, " %s", regs_after);
            same = strstr(padded, one) != NULL;
        }
        if (!same)
            FAIL("epoll registrations were \"%s\", now \"%s\"", regs_before, regs_after);
        check_flags("ep", ep, 0, 1);
        /* Everything ready is reported with its own data: ev (count > 0),
         * ep2 (evs holds 3), maybe tper; not the pipe (empty) nor its
         * disabled one-shot write end. */
        struct epoll_event got[16];
        int n = epoll_wait(ep, got, 16, 1000), seen1 = 0, seen6 = 0;
        for (int i = 0; i < n; i++) {
            uint64_t d = got[i].data.u64;
            seen1 |= d == 0x1111000000000001ULL;
            seen6 |= d == 6;
            if (d == 0x2222000000000002ULL || d == 0x5555000000000005ULL)
                FAIL("epoll reported %llx, which is not ready", (unsigned long long)d);
        }
        if (!seen1 || !seen6) FAIL("epoll_wait: ev seen %d, ep2 seen %d (%d events)", seen1, seen6, n);
        int n2 = epoll_wait(ep2, got, 16, 0);
        if (n2 != 1 || got[0].data.u64 != 0x6666) FAIL("ep2: %d events, data %llx", n2, n2 > 0 ? (unsigned long long)got[0].data.u64 : 0ULL);
        /* The edge-triggered pipe wakes up once for a write. */
        if (write(p[1], "x", 1) != 1) FAIL("pipe: write");
        n = epoll_wait(ep, got, 16, 1000);
        int seen2 = 0;
        for (int i = 0; i < n; i++) seen2 += got[i].data.u64 == 0x2222000000000002ULL;
        if (seen2 != 1) FAIL("the pipe's EPOLLIN came %d times", seen2);
    }
    if (want_ev && !why[0]) {
        check_flags("ev", ev, 0, 1);
        check_flags("evs", evs, 1, 0);
        if (read(ev, &v, 8) != 8) FAIL("ev: read: %s", strerror(errno));
        else if (v != (uint64_t)(7 + ticks)) FAIL("ev: count %llu, not %ld", (unsigned long long)v, 7 + ticks);
        for (int i = 0; i < 3 && !why[0]; i++)
            if (read(evs, &v, 8) != 8 || v != 1) FAIL("evs: read %d gave %llu (%s)", i, (unsigned long long)v, strerror(errno));
        if (!why[0] && (read(evs, &v, 8) != -1 || errno != EAGAIN)) FAIL("evs: a fourth read did not fail with EAGAIN");
    }
    if (want_t && !why[0]) {
        check_flags("tlong", tlong, 0, 0);
        check_flags("tper", tper, 1, 0);
        check_flags("tabs", tabs, 0, 1);
        struct itimerspec cur;
        timerfd_gettime(tlong, &cur);
        if (ns(cur.it_interval) != 500000000000LL) FAIL("tlong: interval %lld ns", ns(cur.it_interval));
        if (ns(cur.it_value) <= 900000000000LL || ns(cur.it_value) > 1000000000000LL) FAIL("tlong: %lld ns left", ns(cur.it_value));
        timerfd_gettime(tabs, &cur);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        long long off = ns(now) + ns(cur.it_value) - abs_deadline;
        if (off < -1000000000LL || off > 1000000000LL) FAIL("tabs: expires %lld ns away from its deadline", off);
        /* A reset of the realtime clock would cancel only TFD_TIMER_CANCEL_ON_SET
         * timers; what we can see: the flag is kept in fdinfo. */
        char path[64], line[256]; int abs_flag = -1;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", tabs);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) sscanf(line, "settime flags: %o", (unsigned *)&abs_flag);
        if (f) fclose(f);
        if (abs_flag != TFD_TIMER_ABSTIME) FAIL("tabs: settime flags %o", abs_flag);
        /* The pending tick is still there, once. */
        if (read(tpend, &v, 8) != 8 || v != 1) FAIL("tpend: %llu ticks pending, not 1", (unsigned long long)v);
        /* tper still fires. */
        struct pollfd pf = {tper, POLLIN, 0};
        if (!why[0] && poll(&pf, 1, 2000) != 1) FAIL("tper: no expiry within 2 s");
        if (expirations < ticks / 2) FAIL("tper: %ld expirations in %ld ticks", expirations, ticks);
    }
    if (want_s && !why[0]) {
        check_flags("sfd", sfd, 1, 0);
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si) FAIL("sfd: the queued SIGRTMIN+1 is not there: %s", strerror(errno));
        else if ((int)si.ssi_signo != SIGRTMIN + 1 || si.ssi_int != 77) FAIL("sfd: got signal %u value %d", si.ssi_signo, si.ssi_int);
        raise(SIGUSR2);
        if (!why[0] && read(sfd, &si, sizeof si) != -1) FAIL("sfd: took signal %u, which is not in its mask", si.ssi_signo);
        raise(SIGUSR1);
        if (!why[0] && (read(sfd, &si, sizeof si) != sizeof si || si.ssi_signo != SIGUSR1)) FAIL("sfd: SIGUSR1 not read");
    }
    if (why[0]) { printf("VERDICT FAIL %s\n", why); return 1; }
    printf("VERDICT OK %ld ticks\n", ticks);
    return 0;
}
