/* pipes: pipes and a FIFO holding bytes across checkpoints and restarts.
 *   - "big": 10000 bytes of a known pattern, never read until the end;
 *     read end close-on-exec, write end not; a dup of the read end.
 *   - "huge": capacity raised to 128 KiB, holding 100000 bytes.
 *   - "flow": every tick writes 100 bytes of a running sequence and reads
 *     60, so the bytes in it change all the time; every byte read must
 *     be the next one of the sequence (none lost, none doubled).
 *   - "nb": both ends O_NONBLOCK, holding 3000 bytes.
 *   - a FIFO (argv[2], created here) open for reading and for writing,
 *     holding 5000 bytes.
 * Prints "tick N" every 100 ms; when STOPFILE (argv[1]) exists it reads
 * everything back, checks the flags, and prints "VERDICT OK" or
 * "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char why[256];
#define FAIL(...) do { if (!why[0]) snprintf(why, sizeof why, __VA_ARGS__); } while (0)

static unsigned char pat(long i, int salt) { return (unsigned char)((i * 7 + salt + i / 251) % 256); }

static void fill(int fd, long n, int salt) {
    unsigned char buf[4096];
    for (long done = 0; done < n;) {
        long k = n - done < (long)sizeof buf ? n - done : (long)sizeof buf;
        for (long i = 0; i < k; i++) buf[i] = pat(done + i, salt);
        ssize_t w = write(fd, buf, k);
        if (w <= 0) { FAIL("fill salt %d: write: %s", salt, strerror(errno)); return; }
        done += w;
    }
}

/* Reads exactly n bytes (nonblocking fds: must all be there) and checks them. */
static void drain(const char *name, int fd, long n, int salt, long from) {
    unsigned char buf[4096];
    long got = 0;
    while (got < n) {
        long k = n - got < (long)sizeof buf ? n - got : (long)sizeof buf;
        ssize_t r = read(fd, buf, k);
        if (r <= 0) { FAIL("%s: %ld of %ld bytes, then %s", name, got, n, r ? strerror(errno) : "EOF"); return; }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(from + got + i, salt)) { FAIL("%s: byte %ld is %u, not %u", name, from + got + i, buf[i], pat(from + got + i, salt)); return; }
        got += r;
    }
    /* Nothing more: the bytes were not doubled. */
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    ssize_t r = read(fd, buf, 1);
    if (r > 0) FAIL("%s: more than the %ld bytes written", name, n);
    else if (r < 0 && errno != EAGAIN) FAIL("%s: read after the end: %s", name, strerror(errno));
    fcntl(fd, F_SETFL, fl);
}

static void check_flags(const char *name, int fd, int want_nb, int want_cloexec) {
    int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
    if (fl < 0 || fdfl < 0) { FAIL("%s: fd %d is not open", name, fd); return; }
    if (!!(fl & O_NONBLOCK) != want_nb) FAIL("%s: O_NONBLOCK is %d, not %d", name, !!(fl & O_NONBLOCK), want_nb);
    if (!!(fdfl & FD_CLOEXEC) != want_cloexec) FAIL("%s: FD_CLOEXEC is %d, not %d", name, !!(fdfl & FD_CLOEXEC), want_cloexec);
}

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *fifo = argc > 2 ? argv[2] : "/tmp/ckpt-pipes-fifo";
    setvbuf(stdout, NULL, _IOLBF, 0);

    int big[2], huge[2], flow[2], nb[2];
    if (pipe(big) || pipe(huge) || pipe(flow) || pipe2(nb, O_NONBLOCK)) return 1;
    fcntl(big[0], F_SETFD, FD_CLOEXEC);
    int big_dup = dup(big[0]);
    fill(big[1], 10000, 1);
    if (fcntl(huge[1], F_SETPIPE_SZ, 128 * 1024) < 128 * 1024) { printf("VERDICT FAIL F_SETPIPE_SZ\n"); return 1; }
    fill(huge[1], 100000, 2);
    fill(nb[1], 3000, 3);
    unlink(fifo);
    if (mkfifo(fifo, 0600)) { printf("VERDICT FAIL mkfifo %s: %s\n", fifo, strerror(errno)); return 1; }
    int fr = open(fifo, O_RDONLY | O_NONBLOCK), fw = open(fifo, O_WRONLY);
    if (fr < 0 || fw < 0) { printf("VERDICT FAIL open fifo: %s\n", strerror(errno)); return 1; }
    fill(fw, 5000, 4);
    if (why[0]) { printf("VERDICT FAIL %s\n", why); return 1; }

    long wrote = 0, read_ = 0;
    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        unsigned char b[100];
        for (int i = 0; i < 100; i++) b[i] = pat(wrote + i, 5);
        if (write(flow[1], b, 100) != 100) FAIL("flow: write: %s", strerror(errno));
        wrote += 100;
        if (read(flow[0], b, 60) != 60) FAIL("flow: short read");
        for (int i = 0; i < 60; i++)
            if (b[i] != pat(read_ + i, 5)) { FAIL("flow: byte %ld is wrong", read_ + i); break; }
        read_ += 60;
        printf("tick %ld\n", n);
        if (why[0]) break;
        if (access(stopfile, F_OK) == 0) break;
    }
    if (!why[0]) {
        check_flags("big read end", big[0], 0, 1);
        check_flags("big write end", big[1], 0, 0);
        check_flags("big dup", big_dup, 0, 0);
        check_flags("nb read end", nb[0], 1, 0);
        check_flags("nb write end", nb[1], 1, 0);
        check_flags("fifo read end", fr, 1, 0);
        check_flags("fifo write end", fw, 0, 0);
        if (fcntl(huge[0], F_GETPIPE_SZ) < 100000) FAIL("huge: capacity %d", fcntl(huge[0], F_GETPIPE_SZ));
        /* The dup shares the read end: half through one, half through the other. */
        unsigned char b[5000];
        if (read(big_dup, b, 5000) != 5000) FAIL("big dup: short read");
        for (int i = 0; i < 5000 && !why[0]; i++)
            if (b[i] != pat(i, 1)) FAIL("big dup: byte %d is wrong", i);
        if (!why[0]) {
            unsigned char r[5000];
            if (read(big[0], r, 5000) != 5000) FAIL("big: short read after the dup's");
            for (int i = 0; i < 5000 && !why[0]; i++)
                if (r[i] != pat(5000 + i, 1)) FAIL("big: byte %d is wrong", 5000 + i);
            close(big[1]);
            if (!why[0] && read(big[0], r, 1) != 0) FAIL("big: no EOF after the write end closed");
        }
        drain("huge", huge[0], 100000, 2, 0);
        drain("nb", nb[0], 3000, 3, 0);
        drain("fifo", fr, 5000, 4, 0);
        drain("flow", flow[0], wrote - read_, 5, read_);
    }
    unlink(fifo);
    if (why[0]) { printf("VERDICT FAIL %s\n", why); return 1; }
    printf("VERDICT OK %ld ticks\n", wrote / 100);
    return 0;
}
