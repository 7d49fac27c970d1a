/* pipeline: a producer and a consumer joined by a pipe, children of one
 * parent. The producer writes a numbered byte stream as fast as the pipe
 * takes it (byte k of the stream is byte k%4 of the little-endian 32-bit
 * word k/4), so the pipe is full most of the time; the consumer reads at
 * most 4096 bytes every 10 ms and checks every byte against the stream:
 * a lost byte (a gap) or a doubled one (a repeat) makes it print
 *   VERDICT FAIL consumer: byte <k> is <b>, want <b> (in word <k/4>)
 * and exit 1. Both print progress lines, every 40960 bytes:
 *   tick producer sent=<bytes>
 *   tick consumer got=<bytes> queued=<bytes waiting in the pipe (FIONREAD)>
 *
 * With an argument STOPFILE, once that file exists the producer closes
 * its end and exits 0; the consumer reads what is left up to end-of-file
 * and exits 0. The parent, which closed both ends after the forks, waits
 * for both and prints "VERDICT OK <n> bytes in order ..." (the consumer's
 * count, which it passes back on a second pipe) or "VERDICT FAIL ...".
 *
 * With a second argument "fast" the consumer reads without pausing and
 * both print progress every 16 MiB: the pipe is nearly empty and both
 * run, so a checkpoint that does not stop both before either captures
 * its state loses bytes (the producer's count went on after the pipe was
 * read) or doubles them (the consumer's did). The producer is also slow
 * to stop, like a thread in a long uninterruptible wait: it writes in
 * 100 ms bursts with every signal blocked by a raw rt_sigprocmask (which
 * the writer cannot see), so its checkpoint signal waits for the end of
 * a burst while the consumer stops at once (its writes are non-blocking
 * then, so a stopped consumer cannot hold a burst open forever). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096
static uint64_t tick_bytes = 40960;
static int fast;

static unsigned char stream_byte(uint64_t k) {
    uint32_t w = (uint32_t)(k / 4);
    return (unsigned char)(w >> (8 * (k % 4)));
}

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void producer(int w, const char *stop) {
    unsigned char buf[CHUNK];
    uint64_t sent = 0, next_tick = tick_bytes, burst_end = 0;
    uint64_t all = ~(uint64_t)0, old = 0;
    if (fast) fcntl(w, F_SETFL, fcntl(w, F_GETFL) | O_NONBLOCK);
    for (;;) {
        if (fast && now_ms() >= burst_end) {
            /* End a burst (a pending signal comes now), start the next. */
            if (burst_end) syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, 8);
            if (stop && access(stop, F_OK) == 0) break;
            syscall(SYS_rt_sigprocmask, SIG_BLOCK, &all, &old, 8);
            burst_end = now_ms() + 100;
        }
        if (stop && access(stop, F_OK) == 0) break;
        for (size_t i = 0; i < CHUNK; i++) buf[i] = stream_byte(sent + i);
        ssize_t n = write(w, buf, CHUNK);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                struct timespec ts = {0, 1000000L};
                nanosleep(&ts, NULL);
                continue;
            }
            printf("VERDICT FAIL producer: write: %s\n", strerror(errno));
            exit(1);
        }
        sent += (uint64_t)n; /* a short write: the rest goes next time */
        if (sent >= next_tick) {
            printf("tick producer sent=%llu\n", (unsigned long long)sent);
            next_tick += tick_bytes;
        }
    }
    close(w);
    exit(0);
}

static void consumer(int r, int report) {
    unsigned char buf[CHUNK];
    uint64_t got = 0, next_tick = tick_bytes;
    for (;;) {
        struct timespec ts = {0, 10 * 1000000L};
        if (!fast) nanosleep(&ts, NULL);
        ssize_t n = read(r, buf, CHUNK);
        if (n < 0) {
            if (errno == EINTR) continue;
            printf("VERDICT FAIL consumer: read: %s\n", strerror(errno));
            exit(1);
        }
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) {
            uint64_t k = got + (uint64_t)i;
            if (buf[i] != stream_byte(k)) {
                printf("VERDICT FAIL consumer: byte %llu is %u, want %u (in word %llu)\n",
                       (unsigned long long)k, buf[i], stream_byte(k),
                       (unsigned long long)(k / 4));
                exit(1);
            }
        }
        got += (uint64_t)n;
        if (got >= next_tick) {
            int queued = -1;
            ioctl(r, FIONREAD, &queued);
            printf("tick consumer got=%llu queued=%d\n", (unsigned long long)got, queued);
            next_tick += tick_bytes;
        }
    }
    char line[64];
    int len = snprintf(line, sizeof line, "%llu", (unsigned long long)got);
    if (write(report, line, (size_t)len) != len) exit(1);
    exit(0);
}

static int reap(pid_t child, const char *name) {
    int st;
    pid_t r;
    do {
        r = waitpid(child, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != child) {
        printf("VERDICT FAIL parent: waitpid(%s %d) = %d (%s)\n", name, child, r,
               strerror(errno));
        return -1;
    }
    if (!WIFEXITED(st)) {
        printf("VERDICT FAIL parent: %s ended with status %#x\n", name, st);
        return -1;
    }
    return WEXITSTATUS(st);
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : NULL;
    if (argc > 2 && strcmp(argv[2], "fast") == 0) {
        fast = 1;
        tick_bytes = 16 << 20;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int p[2], rep[2];
    if (pipe(p) != 0 || pipe(rep) != 0) {
        printf("VERDICT FAIL pipe: %s\n", strerror(errno));
        return 1;
    }
    pid_t prod = fork();
    if (prod == 0) {
        close(p[0]);
        close(rep[0]);
        close(rep[1]);
        producer(p[1], stop);
    }
    pid_t cons = fork();
    if (cons == 0) {
        close(p[1]);
        close(rep[0]);
        consumer(p[0], rep[1]);
    }
    if (prod < 0 || cons < 0) {
        printf("VERDICT FAIL fork: %s\n", strerror(errno));
        return 1;
    }
    close(p[0]);
    close(p[1]);
    close(rep[1]);
    printf("started producer=%d consumer=%d\n", prod, cons);
    char count[64] = "";
    ssize_t n;
    size_t have = 0;
    while (have < sizeof count - 1 &&
           ((n = read(rep[0], count + have, sizeof count - 1 - have)) > 0 ||
            (n < 0 && errno == EINTR)))
        if (n > 0) have += (size_t)n;
    count[have] = 0;
    int sp = reap(prod, "producer");
    int sc = reap(cons, "consumer");
    if (sp != 0 || sc != 0 || have == 0) {
        printf("VERDICT FAIL parent: producer exit %d, consumer exit %d, count '%s'\n", sp, sc,
               count);
        return 1;
    }
    printf("VERDICT OK %s bytes in order, no gap, no repeat\n", count);
    return 0;
}
