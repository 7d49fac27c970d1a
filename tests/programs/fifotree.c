/* fifotree: a producer and a consumer of one computation talking through
 * a named FIFO (mkfifo) with records in flight.
 *
 *   fifotree STOPFILE FIFO parent    the root is the producer, its child
 *                                    the consumer (the child opens FIFO
 *                                    after the fork: two descriptions)
 *   fifotree STOPFILE FIFO siblings  the root forks a producer and a
 *                                    consumer, each opening FIFO itself
 *                                    (unrelated but for their parent)
 *
 * The producer writes 16-byte records {seq, value(seq)} as fast as the
 * FIFO takes them, so the FIFO is full most of the time; the consumer
 * reads at most 16 records every 10 ms and checks each one: a lost
 * record (a gap), a doubled one (a repeat) or a torn one makes it print
 *   VERDICT FAIL consumer: record <k>: seq <s> value <v>
 * and exit 1. Progress every 1024 records:
 *   tick producer sent=<records>
 *   tick consumer got=<records> queued=<bytes waiting (FIONREAD)>
 *
 * Once STOPFILE exists the producer closes the FIFO and reports the
 * number of records it sent; the consumer reads what is left up to
 * end-of-file and reports its count and the sum of the values. The root
 * prints "VERDICT OK <n> records in order, sum <s>" when both agree
 * (count, and the sum of value(0..n)), or "VERDICT FAIL ...". */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TICK 1024
#define BATCH 16

struct rec {
    uint64_t seq;
    uint64_t value;
};

static uint64_t value_of(uint64_t seq) { return seq * 2654435761u % 1000003u; }

static void say_to(int fd, const char *what, uint64_t a, uint64_t b) {
    char line[96];
    int len = snprintf(line, sizeof line, "%s %llu %llu", what, (unsigned long long)a,
                       (unsigned long long)b);
    if (write(fd, line, (size_t)len) != len) exit(1);
}

/* Writes records until STOPFILE exists; returns how many were sent. */
static uint64_t produce(int w, const char *stop) {
    struct rec buf[BATCH];
    uint64_t sent = 0, next_tick = TICK;
    size_t partial = 0; /* bytes of buf[0] already written */
    while (access(stop, F_OK) != 0) {
        for (int i = 0; i < BATCH; i++) buf[i] = (struct rec){sent + i, value_of(sent + i)};
        ssize_t n = write(w, (char *)buf + partial, sizeof buf - partial);
        if (n < 0) {
            if (errno == EINTR) continue;
            printf("VERDICT FAIL producer: write: %s\n", strerror(errno));
            exit(1);
        }
        /* A short write: go on from the first record not wholly sent. */
        size_t done = partial + (size_t)n;
        sent += done / sizeof(struct rec);
        partial = done % sizeof(struct rec);
        if (partial) {
            /* Finish the torn record before anything else. */
            struct rec r = {sent, value_of(sent)};
            size_t off = partial;
            while (off < sizeof r) {
                ssize_t k = write(w, (char *)&r + off, sizeof r - off);
                if (k < 0 && errno == EINTR) continue;
                if (k < 0) {
                    printf("VERDICT FAIL producer: write: %s\n", strerror(errno));
                    exit(1);
                }
                off += (size_t)k;
            }
            sent++;
            partial = 0;
        }
        if (sent >= next_tick) {
            printf("tick producer sent=%llu\n", (unsigned long long)sent);
            next_tick += TICK;
        }
    }
    close(w);
    return sent;
}

static void consume(int r, int report) {
    struct rec buf[BATCH];
    char *p = (char *)buf;
    size_t have = 0;
    uint64_t got = 0, sum = 0, next_tick = TICK;
    for (;;) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
        ssize_t n = read(r, p + have, sizeof buf - have);
        if (n < 0) {
            if (errno == EINTR) continue;
            printf("VERDICT FAIL consumer: read: %s\n", strerror(errno));
            exit(1);
        }
        if (n == 0) break;
        have += (size_t)n;
        size_t whole = have / sizeof(struct rec);
        for (size_t i = 0; i < whole; i++) {
            if (buf[i].seq != got || buf[i].value != value_of(got)) {
                printf("VERDICT FAIL consumer: record %llu: seq %llu value %llu\n",
                       (unsigned long long)got, (unsigned long long)buf[i].seq,
                       (unsigned long long)buf[i].value);
                exit(1);
            }
            sum += buf[i].value;
            got++;
            if (got >= next_tick) {
                int queued = -1;
                ioctl(r, FIONREAD, &queued);
                printf("tick consumer got=%llu queued=%d\n", (unsigned long long)got, queued);
                next_tick += TICK;
            }
        }
        memmove(p, p + whole * sizeof(struct rec), have - whole * sizeof(struct rec));
        have -= whole * sizeof(struct rec);
    }
    if (have) {
        printf("VERDICT FAIL consumer: %zu bytes of a torn record at the end\n", have);
        exit(1);
    }
    say_to(report, "got", got, sum);
    exit(0);
}

static int open_fifo(const char *path, int flags) {
    int fd;
    do {
        fd = open(path, flags);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        printf("VERDICT FAIL open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

static int reap(pid_t child, const char *name) {
    int st;
    pid_t r;
    do {
        r = waitpid(child, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != child || !WIFEXITED(st)) {
        printf("VERDICT FAIL root: %s %d: waitpid %d status %#x (%s)\n", name, child, r, st,
               strerror(errno));
        return -1;
    }
    return WEXITSTATUS(st);
}

/* Reads "WHAT A B" from fd (to end-of-file). */
static int hear(int fd, const char *what, uint64_t *a, uint64_t *b) {
    char line[96] = "", word[16];
    size_t have = 0;
    ssize_t n;
    while (have < sizeof line - 1 &&
           ((n = read(fd, line + have, sizeof line - 1 - have)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0) have += (size_t)n;
    unsigned long long x, y;
    if (sscanf(line, "%15s %llu %llu", word, &x, &y) != 3 || strcmp(word, what) != 0) {
        printf("VERDICT FAIL root: no '%s' report (read '%s')\n", what, line);
        return -1;
    }
    *a = x;
    *b = y;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[3], "parent") != 0 && strcmp(argv[3], "siblings") != 0)) {
        fprintf(stderr, "usage: fifotree STOPFILE FIFO parent|siblings\n");
        return 2;
    }
    const char *stop = argv[1], *fifo = argv[2];
    int siblings = strcmp(argv[3], "siblings") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkfifo(fifo, 0600) != 0 && errno != EEXIST) {
        printf("VERDICT FAIL mkfifo %s: %s\n", fifo, strerror(errno));
        return 1;
    }
    int rep[2], prep[2];
    if (pipe(rep) != 0 || pipe(prep) != 0) {
        printf("VERDICT FAIL pipe: %s\n", strerror(errno));
        return 1;
    }
    pid_t cons = fork();
    if (cons == 0) {
        close(rep[0]);
        close(prep[0]);
        close(prep[1]);
        consume(open_fifo(fifo, O_RDONLY), rep[1]);
    }
    pid_t prod = -1;
    uint64_t sent = 0, ignored = 0;
    if (siblings) {
        prod = fork();
        if (prod == 0) {
            close(rep[0]);
            close(rep[1]);
            close(prep[0]);
            uint64_t n = produce(open_fifo(fifo, O_WRONLY), stop);
            say_to(prep[1], "sent", n, 0);
            exit(0);
        }
    }
    if (cons < 0 || prod < -1 || (siblings && prod < 0)) {
        printf("VERDICT FAIL fork: %s\n", strerror(errno));
        return 1;
    }
    close(rep[1]);
    close(prep[1]);
    printf("started %s consumer=%d producer=%d\n", argv[3], cons, siblings ? prod : getpid());
    if (!siblings) sent = produce(open_fifo(fifo, O_WRONLY), stop);
    uint64_t got = 0, sum = 0;
    if (hear(rep[0], "got", &got, &sum) != 0) return 1;
    if (siblings && hear(prep[0], "sent", &sent, &ignored) != 0) return 1;
    if (reap(cons, "consumer") != 0 || (siblings && reap(prod, "producer") != 0)) {
        printf("VERDICT FAIL root: a child failed\n");
        return 1;
    }
    uint64_t want = 0;
    for (uint64_t k = 0; k < sent; k++) want += value_of(k);
    if (got != sent || sum != want) {
        printf("VERDICT FAIL root: sent %llu records, consumer got %llu, sum %llu want %llu\n",
               (unsigned long long)sent, (unsigned long long)got, (unsigned long long)sum,
               (unsigned long long)want);
        return 1;
    }
    printf("VERDICT OK %llu records in order, sum %llu\n", (unsigned long long)got,
           (unsigned long long)sum);
    return 0;
}
