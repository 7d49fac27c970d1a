/* elsewhere: a program restarted elsewhere (--map-path, --set-env) and
 * its open file changed or gone at restart (the changed-file policy).
 * DIR (argv[2]) is its working directory; it writes DIR/data (1000 bytes
 * "0123456789..." unless it exists) and reads it one byte a tick through
 * an fd opened by a relative path, checking every byte.
 * Every tick (100 ms) it prints
 *   "tick N pos P scratch=<$SCRATCH> added=<$ADDED>"
 * and sets TICK=N with setenv, checking getenv sees it; KEEP must keep its
 * launch value throughout. When STOPFILE (argv[1]) exists it checks that
 * its cwd still holds "data" and prints "VERDICT OK" or "VERDICT FAIL". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char why[256];
#define FAIL(...) do { if (!why[0]) snprintf(why, sizeof why, __VA_ARGS__); } while (0)

static const char *env_or(const char *name) {
    const char *v = getenv(name);
    return v ? v : "(unset)";
}

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (chdir(dir)) {
        printf("VERDICT FAIL chdir %s: %s\n", dir, strerror(errno));
        return 1;
    }
    if (access("data", F_OK)) {
        int w = open("data", O_WRONLY | O_CREAT, 0600);
        for (int i = 0; i < 100; i++) if (write(w, "0123456789", 10) != 10) return 1;
        close(w);
    }
    int data = open("data", O_RDONLY);
    if (data < 0) {
        printf("VERDICT FAIL open data: %s\n", strerror(errno));
        return 1;
    }
    char keep[256];
    snprintf(keep, sizeof keep, "%s", env_or("KEEP"));
    long pos = 0;
    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        char c;
        ssize_t r = read(data, &c, 1);
        if (r != 1) FAIL("data: read at %ld: %s", pos, r ? strerror(errno) : "end of file");
        else if (c != '0' + pos % 10) FAIL("data: byte at %ld is %c", pos, c);
        pos++;
        char t[32];
        snprintf(t, sizeof t, "%ld", n);
        if (setenv("TICK", t, 1)) FAIL("setenv: %s", strerror(errno));
        else if (strcmp(env_or("TICK"), t)) FAIL("getenv(TICK) is %s, not %s", env_or("TICK"), t);
        if (strcmp(env_or("KEEP"), keep)) FAIL("KEEP is %s, not %s", env_or("KEEP"), keep);
        printf("tick %ld pos %ld scratch=%s added=%s\n", n, pos, env_or("SCRATCH"), env_or("ADDED"));
        if (why[0] || access(stopfile, F_OK) == 0) break;
    }
    if (!why[0] && access("data", R_OK)) FAIL("cwd: no data in it: %s", strerror(errno));
    if (why[0]) printf("VERDICT FAIL %s\n", why);
    else printf("VERDICT OK\n");
    return 0;
}
