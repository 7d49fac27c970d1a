/* ofd: open file descriptions shared by a parent and its child, and
 * files they open separately. Usage: ofd DIR STOPFILE.
 *
 * Before the fork the parent opens, in DIR, shared.log (O_WRONLY, no
 * O_APPEND), append.log (O_WRONLY | O_APPEND) and seek.dat (O_RDWR):
 * the child inherits them, one open file description each, and an
 * eventfd (EFD_NONBLOCK) the child adds 1 to every round and the parent
 * reads (1, not EAGAIN: the same eventfd). After the
 * fork each process opens own.dat on its own (the same fd number in
 * both, two descriptions). Then, in rounds, in strict turns over two
 * pipes:
 *   child:  seek.dat to 1000+i, own.dat to 7000+i, a record "C <i>" to
 *           shared.log and append.log, then its turn ends;
 *   parent: sees seek.dat at 1000+i (the child's lseek moved its offset
 *           too) and its own.dat where it left it, moves seek.dat to
 *           2000+i and own.dat to 3000+i, writes "P <i>", then its turn
 *           ends;
 *   child:  sees seek.dat at 2000+i and its own.dat still at 7000+i.
 * Every 5 rounds the parent prints
 *   tick n=<round>
 * When STOPFILE exists the parent tells the child to stop, reaps it (it
 * must exit 0), and checks that shared.log holds exactly C 0, P 0, C 1,
 * P 1, ... (nothing overwritten: one offset; a restart writes the rounds
 * after its checkpoint again, over the same bytes), append.log the same
 * in pairs that may go back to an earlier round after a restart (appended
 * again), and that append.log still has O_APPEND. It prints "VERDICT OK rounds=<n>"
 * and exits 0, or "VERDICT FAIL <why>" (either process) and exits 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REC 16

static int shared_fd, append_fd, seek_fd, own_fd, event_fd;

static void fail(const char *who, const char *what, long want, long got) {
    printf("VERDICT FAIL %s: %s: want %ld, got %ld\n", who, what, want, got);
    exit(1);
}

static void nap(void) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

static void put(int fd, char who, long i) {
    char rec[32];
    snprintf(rec, sizeof rec, "%c %013ld\n", who, i);
    if (write(fd, rec, REC) != REC) {
        printf("VERDICT FAIL %c: write: %s\n", who, strerror(errno));
        exit(1);
    }
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

static long pos(int fd) { return (long)lseek(fd, 0, SEEK_CUR); }

static int open_own(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/own.dat", dir);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    if (fd < 0) {
        printf("VERDICT FAIL open %s: %s\n", path, strerror(errno));
        exit(1);
    }
    return fd;
}

/* The records of NAME, REC bytes each, in turns C 0, P 0, C 1, P 1, ...
 * up to P LAST. APPEND: the file is written with O_APPEND, so what the
 * program wrote between a checkpoint and the kill stays, and the
 * restarted program appends the same records again: a record may go
 * back to an earlier one, never skip one. */
static int check_log(const char *dir, const char *name, long last, int append) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        printf("VERDICT FAIL %s: %s\n", path, strerror(errno));
        return -1;
    }
    char rec[REC + 1], want[32];
    long k = 0, prev = -1; /* records as 2 * round + (P ? 1 : 0) */
    while (fread(rec, 1, REC, f) == REC) {
        rec[REC] = 0;
        long at = 2 * atol(rec + 2) + (rec[0] == 'P');
        if (!(append && at >= 0 && at <= prev))
            at = prev + 1;
        snprintf(want, sizeof want, "%c %013ld\n", at % 2 ? 'P' : 'C', at / 2);
        if (memcmp(rec, want, REC) != 0) {
            printf("VERDICT FAIL %s: record %ld is \"%.15s\", not \"%.15s\"\n", name, k, rec,
                   want);
            fclose(f);
            return -1;
        }
        prev = at;
        k++;
    }
    fclose(f);
    if (prev != 2 * last + 1) {
        printf("VERDICT FAIL %s: %ld records, the last \"%c %ld\", not \"P %ld\"\n", name, k,
               prev % 2 ? 'P' : 'C', prev / 2, last);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: ofd DIR STOPFILE\n");
        return 2;
    }
    const char *dir = argv[1], *stop = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/shared.log", dir);
    shared_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    snprintf(path, sizeof path, "%s/append.log", dir);
    append_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    snprintf(path, sizeof path, "%s/seek.dat", dir);
    seek_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int c2p[2], p2c[2];
    event_fd = eventfd(0, EFD_NONBLOCK);
    if (shared_fd < 0 || append_fd < 0 || seek_fd < 0 || event_fd < 0 || pipe(c2p) ||
        pipe(p2c)) {
        printf("VERDICT FAIL setup: %s\n", strerror(errno));
        return 1;
    }
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        close(c2p[0]);
        close(p2c[1]);
        own_fd = open_own(dir);
        for (long i = 0;; i++) {
            lseek(seek_fd, 1000 + i, SEEK_SET);
            lseek(own_fd, 7000 + i, SEEK_SET);
            put(shared_fd, 'C', i);
            put(append_fd, 'C', i);
            uint64_t one = 1;
            if (write(event_fd, &one, sizeof one) != sizeof one)
                fail("child", "eventfd write", sizeof one, -1);
            give(c2p[1], 'x');
            char c = take(p2c[0]);
            if (pos(seek_fd) != 2000 + i)
                fail("child", "seek.dat offset after the parent's lseek", 2000 + i, pos(seek_fd));
            if (pos(own_fd) != 7000 + i)
                fail("child", "its own own.dat offset", 7000 + i, pos(own_fd));
            if (c == 's')
                _exit(0);
        }
    }
    close(c2p[1]);
    close(p2c[0]);
    own_fd = open_own(dir);
    long i;
    for (i = 0;; i++) {
        take(c2p[0]);
        uint64_t got = 0;
        if (read(event_fd, &got, sizeof got) != sizeof got || got != 1)
            fail("parent", "the eventfd count the child added", 1, (long)got);
        if (pos(seek_fd) != 1000 + i)
            fail("parent", "seek.dat offset after the child's lseek", 1000 + i, pos(seek_fd));
        if (i > 0 && pos(own_fd) != 3000 + i - 1)
            fail("parent", "its own own.dat offset", 3000 + i - 1, pos(own_fd));
        lseek(seek_fd, 2000 + i, SEEK_SET);
        lseek(own_fd, 3000 + i, SEEK_SET);
        put(shared_fd, 'P', i);
        put(append_fd, 'P', i);
        int done = access(stop, F_OK) == 0;
        give(p2c[1], done ? 's' : 'y');
        if (done)
            break;
        if (i % 5 == 0)
            printf("tick n=%ld\n", i);
        nap();
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
    if (!(fcntl(append_fd, F_GETFL) & O_APPEND)) {
        printf("VERDICT FAIL append.log lost O_APPEND\n");
        return 1;
    }
    if (check_log(dir, "shared.log", i, 0) || check_log(dir, "append.log", i, 1))
        return 1;
    printf("VERDICT OK rounds=%ld\n", i + 1);
    return 0;
}
