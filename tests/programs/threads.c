/* threads: 8 threads. A three-stage pipeline (producer -> middle ->
 * consumer, bounded queues with a mutex and condition variables) whose
 * items must arrive in order; a thread blocked on a mutex that main holds;
 * a thread waiting on a condition variable; a thread in nanosleep; a
 * thread blocked in read() on a pipe; a thread checking its thread-local
 * variables. Main prints "tick N consumed=C" every 200 ms; when STOPFILE
 * (argv[1]) exists it releases everything, joins every thread (after a
 * restart: pthread_join relies on clear-child-tid), starts and joins one
 * more, and prints "VERDICT OK" or "VERDICT FAIL <why>". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define QN 16
struct queue {
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
    long items[QN];
    int head, len;
};
static struct queue q1 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
static struct queue q2 = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER};
static volatile int stop;
static volatile long consumed;
static char failure[256];
static pthread_mutex_t fail_m = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *why) {
    pthread_mutex_lock(&fail_m);
    if (!failure[0]) snprintf(failure, sizeof failure, "%s", why);
    pthread_mutex_unlock(&fail_m);
}

static void put(struct queue *q, long v) {
    pthread_mutex_lock(&q->m);
    while (q->len == QN && !stop) pthread_cond_wait(&q->not_full, &q->m);
    if (q->len < QN) {
        q->items[(q->head + q->len) % QN] = v;
        q->len++;
    }
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}

static int get(struct queue *q, long *v) {
    pthread_mutex_lock(&q->m);
    while (q->len == 0 && !stop) pthread_cond_wait(&q->not_empty, &q->m);
    int ok = q->len > 0;
    if (ok) {
        *v = q->items[q->head];
        q->head = (q->head + 1) % QN;
        q->len--;
    }
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->m);
    return ok;
}

static void *producer(void *a) {
    (void)a;
    for (long i = 1; !stop; i++) {
        put(&q1, i);
        usleep(2000);
    }
    return (void *)1;
}

static void *middle(void *a) {
    (void)a;
    long v, want = 1;
    while (get(&q1, &v)) {
        if (v != want) fail("middle: out of order");
        want = v + 1;
        put(&q2, v * 2);
    }
    return (void *)1;
}

static void *consumer(void *a) {
    (void)a;
    long v, want = 2;
    while (get(&q2, &v)) {
        if (v != want) fail("consumer: out of order");
        want = v + 2;
        consumed++;
    }
    return (void *)1;
}

static pthread_mutex_t held = PTHREAD_MUTEX_INITIALIZER;
static volatile int got_held;
static void *mutex_waiter(void *a) {
    (void)a;
    pthread_mutex_lock(&held); /* blocked until main releases it at the end */
    got_held = 1;
    pthread_mutex_unlock(&held);
    return (void *)1;
}

static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released;
static void *cond_waiter(void *a) {
    (void)a;
    pthread_mutex_lock(&cm);
    while (!released) pthread_cond_wait(&cv, &cm);
    pthread_mutex_unlock(&cm);
    return (void *)1;
}

static void *sleeper(void *a) {
    (void)a;
    long naps = 0;
    while (!stop) {
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
        naps++;
    }
    return naps > 0 ? (void *)1 : NULL;
}

static int pipefd[2];
static void *reader(void *a) {
    (void)a;
    char c = 0;
    ssize_t n = read(pipefd[0], &c, 1); /* blocked until the end */
    return (n == 1 && c == 'X') ? (void *)1 : NULL;
}

static __thread long tls_counter;
static __thread char tls_name[32];
static void *tls_checker(void *a) {
    long id = (long)a;
    snprintf(tls_name, sizeof tls_name, "tls-%ld", id);
    long shadow = 0;
    while (!stop) {
        tls_counter++;
        shadow++;
        if (tls_counter != shadow) fail("thread-local counter differs from its shadow");
        char want[32];
        snprintf(want, sizeof want, "tls-%ld", id);
        if (strcmp(tls_name, want) != 0) fail("thread-local name changed");
        usleep(1000);
    }
    return (void *)1;
}

static void *late(void *a) { return (void *)((long)a + 1); }

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (pipe(pipefd) != 0) return 1;
    pthread_mutex_lock(&held);
    void *(*fns[8])(void *) = {producer, middle, consumer, mutex_waiter, cond_waiter, sleeper, reader, tls_checker};
    const char *names[8] = {"producer", "middle", "consumer", "mutex", "condvar", "nanosleep", "read", "tls"};
    pthread_t t[8];
    for (long i = 0; i < 8; i++) pthread_create(&t[i], NULL, fns[i], (void *)7);
    long last = 0;
    for (long n = 1;; n++) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long c = consumed;
        printf("tick %ld consumed=%ld%s\n", n, c, c > last ? "" : " (stalled)");
        last = c;
        if (failure[0]) {
            printf("VERDICT FAIL %s\n", failure);
            return 1;
        }
        if (access(stopfile, F_OK) == 0) break;
    }
    long before = consumed;
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    if (consumed <= before) {
        printf("VERDICT FAIL the pipeline is not moving\n");
        return 1;
    }
    stop = 1;
    pthread_mutex_unlock(&held);
    pthread_mutex_lock(&cm);
    released = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&cm);
    if (write(pipefd[1], "X", 1) != 1) return 1;
    for (int i = 0; i < 2; i++) {
        struct queue *q = i ? &q2 : &q1;
        pthread_mutex_lock(&q->m);
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
        pthread_mutex_unlock(&q->m);
    }
    for (int i = 0; i < 8; i++) {
        void *r = NULL;
        if (pthread_join(t[i], &r) != 0 || r != (void *)1) {
            printf("VERDICT FAIL thread %s ended badly\n", names[i]);
            return 1;
        }
    }
    if (!got_held) {
        printf("VERDICT FAIL the mutex waiter never got the mutex\n");
        return 1;
    }
    pthread_t l;
    void *r = NULL;
    if (pthread_create(&l, NULL, late, (void *)41) != 0 || pthread_join(l, &r) != 0 || r != (void *)42) {
        printf("VERDICT FAIL a thread created after restart\n");
        return 1;
    }
    if (failure[0]) {
        printf("VERDICT FAIL %s\n", failure);
        return 1;
    }
    printf("VERDICT OK consumed=%ld\n", consumed);
    return 0;
}
