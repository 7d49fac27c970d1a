/* Test program for the writer: threads that are inside malloc, stdio and
 * blocking syscalls, sigsuspend or sigwait, or that block every signal,
 * when a checkpoint comes.
 * Every 10 ticks main checks that every thread made progress and prints
 * "progress ok" (or "progress STUCK <which>"). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

enum { MALLOC0, MALLOC1, STDIO, BLOCKED, SUSPENDER, READER, SIGWAITER, NT };
static const char *names[NT] = {"malloc0", "malloc1", "stdio",  "blocked",
                                "sigsuspend", "reader", "sigwait"};
static volatile long prog[NT];
static int pfd[2];
static volatile int pipe_ok = 1; /* pipes are not restored yet */

static void *mallocer(void *arg) {
    long id = (long)arg;
    unsigned s = 12345 + id;
    void *keep[64] = {0};
    for (;;) {
        s = s * 1103515245 + 12345;
        int k = (s >> 8) % 64;
        free(keep[k]);
        size_t len = 16 + (s >> 4) % 70000;
        keep[k] = malloc(len);
        memset(keep[k], (int)id, len);
        prog[id]++;
    }
    return NULL;
}

static void *stdio_thread(void *arg) {
    (void)arg;
    FILE *f = fopen("/dev/null", "w");
    char buf[256];
    for (long i = 0;; i++) {
        snprintf(buf, sizeof buf, "line %ld %f", i, i * 0.5);
        fprintf(f, "%s %s\n", buf, "stdio");
        prog[STDIO]++;
    }
    return NULL;
}

static void *blocked(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (;;) {
        for (volatile int i = 0; i < 100000; i++) {
        }
        prog[BLOCKED]++;
    }
    return NULL;
}

static void on_usr1(int s) { (void)s; }

static void *suspender(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    sigdelset(&all, SIGUSR1);
    for (;;) {
        sigsuspend(&all); /* returns after SIGUSR1 (or the checkpoint) */
        prog[SUSPENDER]++;
    }
    return NULL;
}

static void *reader(void *arg) {
    (void)arg;
    char c;
    for (;;) {
        if (read(pfd[0], &c, 1) == 1)
            prog[READER]++;
        else if (errno != EINTR)
            break;
    }
    return NULL;
}

/* A signal thread: every signal blocked, sigwait on the full set. */
static void *sigwaiter(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        int sig = 0;
        if (sigwait(&all, &sig) != 0) continue;
        if (sig == SIGUSR2)
            prog[SIGWAITER]++;
        else
            printf("sigwait got signal %d BAD\n", sig);
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(pfd) != 0) return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigfillset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    /* the program cannot take the checkpoint signal away */
    signal(SIGRTMAX - 2, SIG_IGN);
    pthread_t t[NT];
    pthread_create(&t[MALLOC0], NULL, mallocer, (void *)MALLOC0);
    pthread_create(&t[MALLOC1], NULL, mallocer, (void *)MALLOC1);
    pthread_create(&t[STDIO], NULL, stdio_thread, NULL);
    pthread_create(&t[BLOCKED], NULL, blocked, NULL);
    pthread_create(&t[SUSPENDER], NULL, suspender, NULL);
    pthread_create(&t[READER], NULL, reader, NULL);
    pthread_create(&t[SIGWAITER], NULL, sigwaiter, NULL);
    long last[NT] = {0};
    for (long n = 1;; n++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_kill(t[SUSPENDER], SIGUSR1);
        pthread_kill(t[SIGWAITER], SIGUSR2);
        if (pipe_ok && write(pfd[1], "x", 1) != 1) pipe_ok = 0;
        printf("tick %ld ok\n", n);
        if (n % 10 == 0) {
            char bad[256] = "";
            for (int i = 0; i < NT; i++) {
                if (prog[i] <= last[i] && (i != READER || pipe_ok)) {
                    strcat(bad, " ");
                    strcat(bad, names[i]);
                }
                last[i] = prog[i];
            }
            printf("progress %s%s\n", bad[0] ? "STUCK" : "ok", bad);
        }
        if (access(stop, F_OK) == 0) return 0;
    }
}
