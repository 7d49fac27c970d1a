/* signals: dispositions (handlers with SA_RESTART / SA_SIGINFO /
 * SA_ONSTACK / SA_NODEFER and sa_mask, SIG_IGN), per-thread masks (main
 * and two threads, each with its own), pending signals (SIGUSR1 on the
 * process, SIGUSR2 and a queued SIGRTMIN+3 with value 42 on thread A),
 * three queued SIGRTMIN+2 with values 1, 2, 3 on the process, and
 * per-thread sigaltstacks. Main prints "tick N" every 200 ms; when
 * STOPFILE (argv[1]) exists it checks all of it, delivering the pending
 * signals by unblocking them, and prints "VERDICT OK" or
 * "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RT2 (SIGRTMIN + 2)
#define RT3 (SIGRTMIN + 3)
#define ALT_SIZE (64 * 1024)

static char main_alt[ALT_SIZE], a_alt[ALT_SIZE];
static volatile long progress[2];
static volatile int mask_bad[3];
static volatile int phase;            /* 1: threads check, 2: done */
static char result[2][200];           /* per thread: "" = ok */
static volatile int result_ready[2];
static volatile pid_t tids[2];

static volatile int rt_vals[16], rt_codes[16], rt_n;
static volatile int usr1_n, usr1_mask_ok;
static volatile int usr2_n;
static volatile pid_t usr2_tid;
static volatile int rt3_val, rt3_code, rt3_n;
static volatile pid_t rt3_tid;
static volatile int term_on_alt;

static pid_t gettid_(void) { return (pid_t)syscall(SYS_gettid); }

static void on_usr1(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)si; (void)uc;
    sigset_t cur;
    sigprocmask(SIG_BLOCK, NULL, &cur);
    usr1_mask_ok = sigismember(&cur, SIGUSR2) && sigismember(&cur, SIGUSR1);
    usr1_n++;
}
static void on_usr2(int sig) { (void)sig; usr2_n++; usr2_tid = gettid_(); }
static void on_term(int sig) {
    (void)sig;
    char here;
    term_on_alt = &here >= main_alt && &here < main_alt + ALT_SIZE;
}
static void on_rt2(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    if (rt_n < 16) {
        rt_vals[rt_n] = si->si_value.sival_int;
        rt_codes[rt_n] = si->si_code;
        rt_n++;
    }
}
static void on_rt3(int sig, siginfo_t *si, void *uc) {
    (void)sig; (void)uc;
    rt3_val = si->si_value.sival_int;
    rt3_code = si->si_code;
    rt3_tid = gettid_();
    rt3_n++;
}

static void install(int sig, void *h, int flags, int masked) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = h;
    else
        sa.sa_handler = h;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (masked) sigaddset(&sa.sa_mask, masked);
    if (sigaction(sig, &sa, NULL) != 0) {
        printf("VERDICT FAIL sigaction(%d): %s\n", sig, strerror(errno));
        exit(1);
    }
}

static void set_of(sigset_t *s, const int *sigs) {
    sigemptyset(s);
    for (; *sigs; sigs++) sigaddset(s, *sigs);
}

static int same_mask(const sigset_t *a, const sigset_t *b) {
    for (int s = 1; s <= 64; s++) {
        if (s == 32 || s == 33) continue; /* glibc's own */
        if (sigismember(a, s) != sigismember(b, s)) return 0;
    }
    return 1;
}

/* Whether this thread's sigpending holds exactly `want` among `among`. */
static const char *check_pending(const int *want, const int *among) {
    static __thread char why[120];
    sigset_t p;
    sigpending(&p);
    for (const int *s = among; *s; s++) {
        int w = 0;
        for (const int *x = want; *x; x++) w |= *x == *s;
        if (sigismember(&p, *s) != w) {
            snprintf(why, sizeof why, "signal %d %s pending", *s, w ? "not" : "unexpectedly");
            return why;
        }
    }
    return NULL;
}

static sigset_t mask_main, mask_a, mask_b;
static stack_t alt_main_exp, alt_a_exp;

static void *thread_a(void *arg) {
    (void)arg;
    tids[0] = gettid_();
    pthread_sigmask(SIG_SETMASK, &mask_a, NULL);
    stack_t ss = {.ss_sp = a_alt, .ss_size = ALT_SIZE, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    sigaltstack(NULL, &alt_a_exp);
    while (phase == 0) {
        sigset_t cur;
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        if (!same_mask(&cur, &mask_a)) mask_bad[1] = 1;
        progress[0]++;
        usleep(1000);
    }
    const char *why;
    stack_t now;
    sigaltstack(NULL, &now);
    int all[] = {SIGUSR1, SIGUSR2, RT2, RT3, 0};
    int mine[] = {SIGUSR1, SIGUSR2, RT2, RT3, 0};
    if (now.ss_sp != alt_a_exp.ss_sp || now.ss_size != alt_a_exp.ss_size ||
        now.ss_flags != alt_a_exp.ss_flags)
        snprintf(result[0], sizeof result[0], "thread A altstack %p+%zu flags %d, want %p+%zu flags %d",
                 now.ss_sp, now.ss_size, now.ss_flags, alt_a_exp.ss_sp, alt_a_exp.ss_size, alt_a_exp.ss_flags);
    else if ((why = check_pending(mine, all)))
        snprintf(result[0], sizeof result[0], "thread A: %s", why);
    else {
        sigset_t un;
        int u[] = {SIGUSR2, RT3, 0};
        set_of(&un, u);
        pthread_sigmask(SIG_UNBLOCK, &un, NULL);
        if (usr2_n != 1 || usr2_tid != tids[0])
            snprintf(result[0], sizeof result[0], "thread A: SIGUSR2 delivered %d times (tid %d, want %d)",
                     usr2_n, usr2_tid, tids[0]);
        else if (rt3_n != 1 || rt3_val != 42 || rt3_tid != tids[0] || rt3_code != SI_QUEUE)
            snprintf(result[0], sizeof result[0],
                     "thread A: SIGRTMIN+3 delivered %d times value %d code %d tid %d (want 1, 42, %d, %d)",
                     rt3_n, rt3_val, rt3_code, rt3_tid, SI_QUEUE, tids[0]);
    }
    result_ready[0] = 1;
    while (phase != 2) usleep(1000);
    return NULL;
}

static void *thread_b(void *arg) {
    (void)arg;
    tids[1] = gettid_();
    pthread_sigmask(SIG_SETMASK, &mask_b, NULL);
    while (phase == 0) {
        sigset_t cur;
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        if (!same_mask(&cur, &mask_b)) mask_bad[2] = 1;
        progress[1]++;
        usleep(1000);
    }
    const char *why;
    stack_t now;
    sigaltstack(NULL, &now);
    int all[] = {SIGUSR1, SIGUSR2, RT2, RT3, 0};
    int mine[] = {SIGUSR1, RT2, 0};
    if (!(now.ss_flags & SS_DISABLE))
        snprintf(result[1], sizeof result[1], "thread B has an altstack %p+%zu", now.ss_sp, now.ss_size);
    else if ((why = check_pending(mine, all)))
        snprintf(result[1], sizeof result[1], "thread B: %s", why);
    result_ready[1] = 1;
    while (phase != 2) usleep(1000);
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

#define FAIL(...) do { printf("VERDICT FAIL " __VA_ARGS__); printf("\n"); return 1; } while (0)

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);

    install(SIGUSR1, on_usr1, SA_SIGINFO | SA_RESTART, SIGUSR2);
    install(SIGUSR2, on_usr2, SA_NODEFER, 0);
    install(SIGTERM, on_term, SA_ONSTACK, SIGINT);
    install(SIGHUP, SIG_IGN, 0, 0);
    install(RT2, on_rt2, SA_SIGINFO, 0);
    install(RT3, on_rt3, SA_SIGINFO | SA_RESTART, SIGQUIT);
    struct sigaction exp[65];
    for (int s = 1; s <= 64; s++)
        if (sigaction(s, NULL, &exp[s]) != 0) exp[s].sa_flags = -1;

    int m0[] = {SIGUSR1, RT2, 0};
    int ma[] = {SIGUSR1, RT2, SIGUSR2, RT3, SIGWINCH, 0};
    int mb[] = {SIGUSR1, RT2, SIGINT, SIGQUIT, 0};
    set_of(&mask_main, m0);
    set_of(&mask_a, ma);
    set_of(&mask_b, mb);
    pthread_sigmask(SIG_SETMASK, &mask_main, NULL);
    stack_t ss = {.ss_sp = main_alt, .ss_size = ALT_SIZE, .ss_flags = 0};
    sigaltstack(&ss, NULL);
    sigaltstack(NULL, &alt_main_exp);

    pthread_t ta, tb;
    pthread_create(&ta, NULL, thread_a, NULL);
    pthread_create(&tb, NULL, thread_b, NULL);
    while (!tids[0] || !tids[1] || !progress[0] || !progress[1]) usleep(1000);

    /* Pending: SIGUSR1 on the process, SIGUSR2 and RT3(42) on thread A,
     * RT2 with 1, 2, 3 on the process. */
    kill(getpid(), SIGUSR1);
    pthread_kill(ta, SIGUSR2);
    union sigval v = {.sival_int = 42};
    pthread_sigqueue(ta, RT3, v);
    for (int i = 1; i <= 3; i++) {
        v.sival_int = i;
        sigqueue(getpid(), RT2, v);
    }
    raise(SIGHUP); /* ignored */

    for (long n = 1;; n++) {
        sleep_ms(200);
        sigset_t cur;
        pthread_sigmask(SIG_SETMASK, NULL, &cur);
        if (!same_mask(&cur, &mask_main)) mask_bad[0] = 1;
        printf("tick %ld\n", n);
        if (access(stop, F_OK) == 0) break;
    }

    long before[2] = {progress[0], progress[1]};
    sleep_ms(300);
    for (int i = 0; i < 2; i++)
        if (progress[i] <= before[i]) FAIL("thread %c is stuck", 'A' + i);
    for (int i = 0; i < 3; i++)
        if (mask_bad[i]) FAIL("thread %d's signal mask changed", i);
    for (int s = 1; s <= 64; s++) {
        struct sigaction now;
        if (sigaction(s, NULL, &now) != 0) {
            if (exp[s].sa_flags != -1) FAIL("sigaction(%d) fails now", s);
            continue;
        }
        if (now.sa_handler != exp[s].sa_handler || now.sa_flags != exp[s].sa_flags ||
            !same_mask(&now.sa_mask, &exp[s].sa_mask))
            FAIL("signal %d disposition %p flags %#x, want %p flags %#x (or its sa_mask differs)", s,
                 (void *)now.sa_handler, now.sa_flags, (void *)exp[s].sa_handler, exp[s].sa_flags);
    }
    stack_t now;
    sigaltstack(NULL, &now);
    if (now.ss_sp != alt_main_exp.ss_sp || now.ss_size != alt_main_exp.ss_size ||
        now.ss_flags != alt_main_exp.ss_flags)
        FAIL("main altstack %p+%zu flags %d, want %p+%zu flags %d", now.ss_sp, now.ss_size, now.ss_flags,
             alt_main_exp.ss_sp, alt_main_exp.ss_size, alt_main_exp.ss_flags);
    int all[] = {SIGUSR1, SIGUSR2, RT2, RT3, 0};
    int mine[] = {SIGUSR1, RT2, 0};
    const char *why = check_pending(mine, all);
    if (why) FAIL("main: %s", why);

    phase = 1;
    for (int i = 0; i < 5000 && !(result_ready[0] && result_ready[1]); i++) usleep(1000);
    if (!result_ready[0] || !result_ready[1]) FAIL("threads did not report");
    for (int i = 0; i < 2; i++)
        if (result[i][0]) FAIL("%s", result[i]);
    if (usr1_n != 0 || rt_n != 0) FAIL("SIGUSR1 or SIGRTMIN+2 delivered while blocked");

    sigset_t un;
    int u2[] = {RT2, 0};
    set_of(&un, u2);
    pthread_sigmask(SIG_UNBLOCK, &un, NULL);
    if (rt_n != 3) FAIL("SIGRTMIN+2 delivered %d times, want 3", rt_n);
    for (int i = 0; i < 3; i++)
        if (rt_vals[i] != i + 1 || rt_codes[i] != SI_QUEUE)
            FAIL("SIGRTMIN+2 #%d value %d code %d, want %d code %d", i, rt_vals[i], rt_codes[i], i + 1, SI_QUEUE);
    int u1[] = {SIGUSR1, 0};
    set_of(&un, u1);
    pthread_sigmask(SIG_UNBLOCK, &un, NULL);
    if (usr1_n != 1) FAIL("SIGUSR1 delivered %d times, want 1", usr1_n);
    if (!usr1_mask_ok) FAIL("SIGUSR1's handler ran without its sa_mask (SIGUSR2) blocked");
    raise(SIGTERM);
    if (!term_on_alt) FAIL("SIGTERM's SA_ONSTACK handler did not run on the altstack");
    raise(SIGHUP);
    phase = 2;
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    printf("VERDICT OK\n");
    return 0;
}
