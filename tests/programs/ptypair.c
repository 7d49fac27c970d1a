/* ptypair: a program with its own pseudo-terminal pair, as a terminal
 * emulator or `expect` holds one: posix_openpt, grantpt, unlockpt,
 * ptsname, the slave opened beside the master, raw modes set on the
 * slave (ICANON, ECHO, ISIG, ICRNL, OPOST off, VMIN 1, VTIME 3) and a
 * window of 33x111 set through the master.
 * Every 100 ms a round trip: "ping N" written to the master must be read
 * whole and unchanged from the slave, "pong N" written to the slave from
 * the master; the slave's modes and window size must be as set, and
 * ptsname(master) must name the slave that is open (the number may
 * change at a restart). Prints "tick N pts=/dev/pts/K"; when STOPFILE
 * (argv[1]) exists prints "VERDICT OK" or "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static char why[256];
#define FAIL(...) do { if (!why[0]) snprintf(why, sizeof why, __VA_ARGS__); } while (0)

/* Reads exactly n bytes from fd into buf (at most 2 s). */
static int read_n(int fd, char *buf, size_t n) {
    size_t got = 0;
    for (int tries = 0; got < n && tries < 200; tries++) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r > 0) got += (size_t)r;
        else if (r < 0 && errno != EAGAIN && errno != EINTR) return -1;
        else {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return got == n ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: ptypair STOPFILE\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) {
        printf("VERDICT FAIL posix_openpt: %s\n", strerror(errno));
        return 1;
    }
    char path[64];
    snprintf(path, sizeof path, "%s", ptsname(m));
    int s = open(path, O_RDWR | O_NOCTTY);
    if (s < 0) {
        printf("VERDICT FAIL open %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* Nonblocking reads on both sides, so a lost byte fails, not hangs. */
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);

    struct termios want;
    tcgetattr(s, &want);
    want.c_lflag &= ~(ICANON | ECHO | ISIG | IEXTEN);
    want.c_iflag &= ~(ICRNL | IXON);
    want.c_oflag &= ~OPOST;
    want.c_cc[VMIN] = 1;
    want.c_cc[VTIME] = 3;
    tcsetattr(s, TCSANOW, &want);
    tcgetattr(s, &want);
    struct winsize ws = {.ws_row = 33, .ws_col = 111};
    ioctl(m, TIOCSWINSZ, &ws);
    printf("ready master=%d slave=%d %s\n", m, s, path);

    for (long tick = 0;; tick++) {
        if (access(argv[1], F_OK) == 0) {
            if (why[0]) printf("VERDICT FAIL %s\n", why);
            else printf("VERDICT OK %ld ticks\n", tick);
            return why[0] ? 1 : 0;
        }
        char out[32], in[32];
        int n = snprintf(out, sizeof out, "ping %ld\n", tick);
        if (write(m, out, n) != n) FAIL("tick %ld: write to the master: %s", tick, strerror(errno));
        else if (read_n(s, in, n) || memcmp(in, out, n)) FAIL("tick %ld: the slave did not read \"ping\" whole", tick);
        n = snprintf(out, sizeof out, "pong %ld\n", tick);
        if (write(s, out, n) != n) FAIL("tick %ld: write to the slave: %s", tick, strerror(errno));
        else if (read_n(m, in, n) || memcmp(in, out, n)) FAIL("tick %ld: the master did not read \"pong\" whole", tick);

        struct termios now;
        if (tcgetattr(s, &now)) FAIL("tick %ld: tcgetattr on the slave: %s", tick, strerror(errno));
        else if (now.c_lflag != want.c_lflag || now.c_iflag != want.c_iflag ||
                 now.c_oflag != want.c_oflag || now.c_cc[VMIN] != want.c_cc[VMIN] ||
                 now.c_cc[VTIME] != want.c_cc[VTIME])
            FAIL("tick %ld: slave modes changed: lflag %#x iflag %#x oflag %#x vmin %d vtime %d", tick,
                 now.c_lflag, now.c_iflag, now.c_oflag, now.c_cc[VMIN], now.c_cc[VTIME]);
        struct winsize w = {0};
        ioctl(s, TIOCGWINSZ, &w);
        if (w.ws_row != 33 || w.ws_col != 111) FAIL("tick %ld: window %dx%d", tick, w.ws_row, w.ws_col);
        /* ptsname(master) names the slave that is open. */
        char link[64], target[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", s);
        ssize_t k = readlink(link, target, sizeof target - 1);
        target[k < 0 ? 0 : k] = 0;
        const char *name = ptsname(m);
        if (!name || strcmp(name, target)) FAIL("tick %ld: ptsname %s, slave fd is %s", tick, name ? name : "?", target);
        printf("tick %ld pts=%s\n", tick, target);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
