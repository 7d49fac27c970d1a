/* fifoshare: a FIFO and a pipe opened before a fork, one open file
 * description each that the parent and its child share. Usage:
 * fifoshare FIFO STOPFILE.
 *
 * Before the fork the parent makes FIFO (mkfifo) and opens it O_RDWR,
 * and makes a pipe whose ends both processes keep. Then, in strict turns
 * over two other pipes, each process sees the status flags the other
 * left on the shared descriptions and flips them: the parent finds the
 * FIFO fd and the pipe's write end blocking and sets O_NONBLOCK with
 * fcntl(F_SETFL), the child finds O_NONBLOCK on its inherited fds (the
 * same descriptions) and clears it. In its turn of round i the parent
 * also writes a 16-byte record "P <i>" to the FIFO, which the child reads
 * in its turn (so a record lost or doubled by a restart shows too). A
 * flag the other process set that this one does not see, or a wrong
 * record, makes it print
 *   VERDICT FAIL <who>: <what>: want <w>, got <g>
 * and exit 1. Every 5 rounds the parent prints
 *   tick n=<round>
 * When STOPFILE exists the parent tells the child to stop, reaps it
 * (it must exit 0) and prints "VERDICT OK rounds=<n>". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REC 16

static void fail(const char *who, const char *what, long want, long got) {
    printf("VERDICT FAIL %s: %s: want %ld, got %ld\n", who, what, want, got);
    exit(1);
}

static char take(int fd) {
    char c;
    ssize_t n;
    do {
        n = read(fd, &c, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
        printf("VERDICT FAIL read of a turn: %zd (%s)\n", n, n < 0 ? strerror(errno) : "eof");
        exit(1);
    }
    return c;
}

static void give(int fd, char c) {
    if (write(fd, &c, 1) != 1) {
        printf("VERDICT FAIL write of a turn: %s\n", strerror(errno));
        exit(1);
    }
}

/* Checks that FD's description has O_NONBLOCK iff WANT, then flips it. */
static void see_and_flip(const char *who, const char *what, int fd, int want) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        fail(who, what, want, -1);
    if (!!(fl & O_NONBLOCK) != want)
        fail(who, what, want, !!(fl & O_NONBLOCK));
    if (fcntl(fd, F_SETFL, want ? fl & ~O_NONBLOCK : fl | O_NONBLOCK) != 0)
        fail(who, "F_SETFL", 0, errno);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: fifoshare FIFO STOPFILE\n");
        return 2;
    }
    const char *path = argv[1], *stop = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (mkfifo(path, 0600) != 0 && errno != EEXIST) {
        printf("VERDICT FAIL mkfifo %s: %s\n", path, strerror(errno));
        return 1;
    }
    int fifo = open(path, O_RDWR);
    int shp[2], c2p[2], p2c[2];
    if (fifo < 0 || pipe(shp) || pipe(c2p) || pipe(p2c)) {
        printf("VERDICT FAIL setup: %s\n", strerror(errno));
        return 1;
    }
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        close(c2p[0]);
        close(p2c[1]);
        for (long i = 0;; i++) {
            char c = take(p2c[0]);
            see_and_flip("child", "O_NONBLOCK of the FIFO the parent set", fifo, 1);
            see_and_flip("child", "O_NONBLOCK of the pipe the parent set", shp[1], 1);
            char rec[REC + 1], want[32];
            ssize_t n = read(fifo, rec, REC);
            if (n != REC)
                fail("child", "bytes of a FIFO record", REC, n < 0 ? -errno : n);
            snprintf(want, sizeof want, "P %013ld\n", i);
            if (memcmp(rec, want, REC) != 0) {
                rec[REC - 1] = 0;
                fail("child", "FIFO record (round)", i, atol(rec + 2));
            }
            if (c == 's')
                _exit(0);
            give(c2p[1], 'x');
        }
    }
    close(c2p[1]);
    close(p2c[0]);
    long i;
    for (i = 0;; i++) {
        if (i > 0)
            take(c2p[0]);
        see_and_flip("parent", "O_NONBLOCK of the FIFO the child cleared", fifo, 0);
        see_and_flip("parent", "O_NONBLOCK of the pipe the child cleared", shp[1], 0);
        char rec[32];
        snprintf(rec, sizeof rec, "P %013ld\n", i);
        if (write(fifo, rec, REC) != REC)
            fail("parent", "FIFO write", REC, -errno);
        int done = access(stop, F_OK) == 0;
        give(p2c[1], done ? 's' : 'y');
        if (done)
            break;
        if (i % 5 == 0)
            printf("tick n=%ld\n", i);
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    int st;
    pid_t r;
    do {
        r = waitpid(child, &st, 0);
    } while (r < 0 && errno == EINTR);
    if (r != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        printf("VERDICT FAIL the child: waitpid %d status %#x\n", r, st);
        return 1;
    }
    printf("VERDICT OK rounds=%ld\n", i + 1);
    return 0;
}
