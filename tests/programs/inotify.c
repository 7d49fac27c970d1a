/* inotify: an inotify instance with a gap in its watch descriptors
 * through checkpoints and restarts. In DIR (argv[2]):
 *   wd 1: DIR/a (IN_MODIFY); wd 2: DIR/b, removed (a gap);
 *   wd 3: DIR itself (IN_CREATE | IN_DELETE);
 *   wd 4: "c" relative to DIR, the cwd (IN_MODIFY);
 *   wd 5: DIR/sub/d (IN_DELETE_SELF: no event unless it is deleted).
 * Every tick (100 ms) it writes to a and c and creates and removes DIR/t,
 * then reads the events: exactly wd 1 modify, wd 4 modify, wd 3 create t,
 * wd 3 delete t. Prints "tick N". When STOPFILE (argv[1]) exists it checks
 * O_NONBLOCK and close-on-exec and that a new watch gets wd 6, and prints
 * "VERDICT OK" or "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char why[256];
#define FAIL(...) do { if (!why[0]) snprintf(why, sizeof why, __VA_ARGS__); } while (0)

static void touch(const char *p) {
    int f = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (f < 0 || write(f, "x", 1) != 1) FAIL("write %s: %s", p, strerror(errno));
    close(f);
}

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    setvbuf(stdout, NULL, _IOLBF, 0);
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    if (chdir(dir)) { printf("VERDICT FAIL chdir: %s\n", strerror(errno)); return 1; }
    touch(a); touch(b); touch("c");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int wa = inotify_add_watch(in, a, IN_MODIFY);
    int wb = inotify_add_watch(in, b, IN_MODIFY);
    int wd = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
    int wc = inotify_add_watch(in, "c", IN_MODIFY);
    if (mkdir("sub", 0700) && errno != EEXIST) { printf("VERDICT FAIL mkdir: %s\n", strerror(errno)); return 1; }
    touch("sub/d");
    int ws = inotify_add_watch(in, "sub/d", IN_DELETE_SELF);
    if (in < 0 || wa != 1 || wb != 2 || wd != 3 || wc != 4 || ws != 5 || inotify_rm_watch(in, wb)) {
        printf("VERDICT FAIL setup: wds %d %d %d %d %d: %s\n", wa, wb, wd, wc, ws, strerror(errno));
        return 1;
    }
    char buf[4096] __attribute__((aligned(8)));
    while (read(in, buf, sizeof buf) > 0) {} /* the IN_IGNORED of wd 2 */

    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        touch(a);
        touch("c");
        touch("t");
        unlink("t");
        int seen[4] = {0, 0, 0, 0};
        ssize_t len;
        while ((len = read(in, buf, sizeof buf)) > 0) {
            for (char *p = buf; p < buf + len;) {
                struct inotify_event *e = (struct inotify_event *)p;
                if (e->wd == 1 && e->mask == IN_MODIFY) seen[0]++;
                else if (e->wd == 4 && e->mask == IN_MODIFY) seen[1]++;
                else if (e->wd == 3 && e->mask == IN_CREATE && !strcmp(e->name, "t")) seen[2]++;
                else if (e->wd == 3 && e->mask == IN_DELETE && !strcmp(e->name, "t")) seen[3]++;
                else FAIL("tick %ld: unexpected event wd %d mask %#x name %s", n, e->wd, e->mask,
                          e->len ? e->name : "");
                p += sizeof *e + e->len;
            }
        }
        if (len < 0 && errno != EAGAIN) FAIL("read: %s", strerror(errno));
        for (int i = 0; i < 4; i++)
            if (seen[i] != 1) FAIL("tick %ld: event %d seen %d times", n, i, seen[i]);
        printf("tick %ld\n", n);
        if (why[0] || access(stopfile, F_OK) == 0) break;
    }
    if (!why[0]) {
        if (!(fcntl(in, F_GETFL) & O_NONBLOCK)) FAIL("O_NONBLOCK lost");
        if (fcntl(in, F_GETFD) != FD_CLOEXEC) FAIL("close-on-exec lost");
        int w = inotify_add_watch(in, b, IN_MODIFY);
        if (w != 6) FAIL("a new watch got wd %d, not 6", w);
    }
    if (why[0]) printf("VERDICT FAIL %s\n", why);
    else printf("VERDICT OK\n");
    return 0;
}
