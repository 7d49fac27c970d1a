/* files: regular files, a deleted file, devices and a directory across
 * checkpoints and restarts. DIR (argv[2]) holds the files.
 *   - data: 1000 bytes, open O_RDWR at a moving offset, and a dup of it
 *     (one open file description: every tick reads one byte through one
 *     or the other, and both must see the same offset); a second,
 *     independent open of it whose offset stays 0.
 *   - log: O_WRONLY | O_APPEND | O_CLOEXEC, a line written every tick.
 *   - gone: 20000 bytes, unlinked while open, offset 777.
 *   - /dev/null (write), /dev/zero and /dev/urandom (read), DIR itself.
 * Prints "tick N" every 100 ms; when STOPFILE (argv[1]) exists it checks
 * everything and prints "VERDICT OK" or "VERDICT FAIL <why>". */
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

static char gone_byte(long i) { return (char)('a' + (i * 13 + i / 26) % 26); }

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    setvbuf(stdout, NULL, _IOLBF, 0);
    char p[4096];

    snprintf(p, sizeof p, "%s/data", dir);
    int data = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (int i = 0; i < 100; i++) if (write(data, "0123456789", 10) != 10) return 1;
    int data_dup = dup(data);
    int data2 = open(p, O_RDONLY);
    long pos = 123;
    lseek(data, pos, SEEK_SET);

    snprintf(p, sizeof p, "%s/log", dir);
    int logf = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);

    snprintf(p, sizeof p, "%s/gone", dir);
    int gone = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    for (long i = 0; i < 20000; i++) {
        char c = gone_byte(i);
        if (write(gone, &c, 1) != 1) return 1;
    }
    unlink(p);
    lseek(gone, 777, SEEK_SET);

    int null = open("/dev/null", O_WRONLY);
    int zero = open("/dev/zero", O_RDONLY);
    int urandom = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (data < 0 || data2 < 0 || logf < 0 || gone < 0 || null < 0 || zero < 0 || urandom < 0 || dirfd < 0) {
        printf("VERDICT FAIL setup: %s\n", strerror(errno));
        return 1;
    }

    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        /* One byte through the fd or its dup: one shared offset. */
        int fd = n % 2 ? data : data_dup;
        char c;
        if (read(fd, &c, 1) != 1) FAIL("data: read at %ld: %s", pos, strerror(errno));
        else if (c != '0' + pos % 10) FAIL("data: byte at %ld is %c", pos, c);
        pos++;
        if (lseek(data, 0, SEEK_CUR) != pos || lseek(data_dup, 0, SEEK_CUR) != pos)
            FAIL("data: offsets %ld and %ld, not %ld (dup not shared)", (long)lseek(data, 0, SEEK_CUR),
                 (long)lseek(data_dup, 0, SEEK_CUR), pos);
        if (lseek(data2, 0, SEEK_CUR) != 0) FAIL("data: the second open moved with the first");
        char line[64];
        int k = snprintf(line, sizeof line, "line %ld\n", n);
        if (write(logf, line, k) != k) FAIL("log: write: %s", strerror(errno));
        printf("tick %ld\n", n);
        if (why[0] || access(stopfile, F_OK) == 0) break;
    }
    if (!why[0]) {
        int fl = fcntl(logf, F_GETFL);
        if (!(fl & O_APPEND)) FAIL("log: O_APPEND lost");
        if ((fl & O_ACCMODE) != O_WRONLY) FAIL("log: not write-only");
        if (fcntl(logf, F_GETFD) != FD_CLOEXEC) FAIL("log: close-on-exec lost");
        if (fcntl(data, F_GETFD) != 0) FAIL("data: close-on-exec set");
        if (fcntl(urandom, F_GETFD) != FD_CLOEXEC) FAIL("urandom: close-on-exec lost");
        if ((fcntl(data, F_GETFL) & O_ACCMODE) != O_RDWR) FAIL("data: not read-write");
        /* O_APPEND: a write lands at the end whatever the offset. */
        lseek(logf, 0, SEEK_SET);
        if (write(logf, "end\n", 4) != 4) FAIL("log: write end");
        struct stat st;
        fstat(logf, &st);
        char tail[4];
        snprintf(p, sizeof p, "%s/log", dir);
        int lr = open(p, O_RDONLY);
        if (pread(lr, tail, 4, st.st_size - 4) != 4 || memcmp(tail, "end\n", 4)) FAIL("log: O_APPEND write not at the end");
        close(lr);
    }
    if (!why[0]) {
        struct stat st;
        if (fstat(gone, &st) || st.st_nlink != 0) FAIL("gone: has a name again (nlink %ld)", (long)st.st_nlink);
        if (st.st_size != 20000) FAIL("gone: %ld bytes", (long)st.st_size);
        if (lseek(gone, 0, SEEK_CUR) != 777) FAIL("gone: offset %ld", (long)lseek(gone, 0, SEEK_CUR));
        static char b[20000];
        if (pread(gone, b, 20000, 0) != 20000) FAIL("gone: short read");
        for (long i = 0; i < 20000 && !why[0]; i++)
            if (b[i] != gone_byte(i)) FAIL("gone: byte %ld", i);
        if (write(gone, "X", 1) != 1) FAIL("gone: not writable");
    }
    if (!why[0]) {
        char z[16], r[16];
        memset(z, 1, sizeof z);
        if (write(null, "x", 1) != 1) FAIL("/dev/null: write");
        if (read(zero, z, 16) != 16) FAIL("/dev/zero: read");
        for (int i = 0; i < 16; i++) if (z[i]) FAIL("/dev/zero: not zero");
        if (read(urandom, r, 16) != 16) FAIL("/dev/urandom: read");
        struct stat st;
        if (fstatat(dirfd, "data", &st, 0) || st.st_size != 1000) FAIL("dir: data not found through the directory fd");
    }
    if (why[0]) { printf("VERDICT FAIL %s\n", why); return 1; }
    printf("VERDICT OK\n");
    return 0;
}
