/* A raw-mode terminal program, as a person would use one: it puts its
 * terminal in raw mode (ICANON, ECHO and ICRNL off, VMIN 1, VTIME 7),
 * then reads one key at a time and answers each key at once with a line
 * saying what it saw and whether its terminal is still as it left it
 * (termios, foreground job, /dev/tty open on fd 3). It reports window
 * size changes (SIGWINCH, through a self-pipe). 'q' prints the verdict and exits, putting the
 * terminal back as it found it.
 *
 * Lines: "ready pid=P rows=R cols=C"
 *        "key=K raw=yes|no fg=yes|no icanon=I echo=E vmin=M vtime=T rows=R cols=C"
 *        "fd3 key=K"                 (written through fd 3, /dev/tty)
 *        "winch rows=R cols=C"
 *        "VERDICT OK keys=N" | "VERDICT FAIL ..."
 * Every line ends with "\r\n" (ICRNL is off, OPOST is left on). */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

/* SIGWINCH wakes the main loop through a pipe (a signal that arrives
 * just before a blocking read would only be seen at the next key). */
static int winch_pipe[2];

static void on_winch(int sig) {
    (void)sig;
    char b = 'w';
    (void)!write(winch_pipe[1], &b, 1);
}

static void size(int *rows, int *cols) {
    struct winsize w = {0};
    ioctl(0, TIOCGWINSZ, &w);
    *rows = w.ws_row;
    *cols = w.ws_col;
}

static void say(int fd, const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return;
        }
        s += k;
        n -= (size_t)k;
    }
}

int main(void) {
    char line[256];
    if (!isatty(0)) {
        say(1, "VERDICT FAIL stdin is not a terminal\n");
        return 1;
    }
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (tty < 0 || dup2(tty, 3) < 0) {
        say(1, "VERDICT FAIL cannot open /dev/tty\n");
        return 1;
    }
    if (tty != 3) close(tty);

    struct termios orig, want;
    tcgetattr(0, &orig);
    want = orig;
    want.c_lflag &= ~(ICANON | ECHO | IEXTEN);
    want.c_iflag &= ~(ICRNL | IXON);
    want.c_cc[VMIN] = 1;
    want.c_cc[VTIME] = 7;
    if (tcsetattr(0, TCSANOW, &want) != 0) {
        say(1, "VERDICT FAIL tcsetattr\n");
        return 1;
    }
    tcgetattr(0, &want);

    if (pipe(winch_pipe) != 0) {
        say(1, "VERDICT FAIL pipe\n");
        return 1;
    }
    fcntl(winch_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_winch;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, NULL);

    int rows, cols, keys = 0, bad = 0;
    size(&rows, &cols);
    snprintf(line, sizeof line, "ready pid=%d rows=%d cols=%d\r\n", (int)getpid(), rows, cols);
    say(1, line);

    for (;;) {
        struct pollfd p[2] = {{0, POLLIN, 0}, {winch_pipe[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) continue; /* EINTR */
        if (p[1].revents & POLLIN) {
            char b[16];
            (void)!read(winch_pipe[0], b, sizeof b);
            size(&rows, &cols);
            snprintf(line, sizeof line, "winch rows=%d cols=%d\r\n", rows, cols);
            say(1, line);
        }
        if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        unsigned char c;
        ssize_t n = read(0, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            snprintf(line, sizeof line, "VERDICT FAIL read returned %zd (%s)\r\n", n,
                     n < 0 ? strerror(errno) : "end of file");
            say(1, line);
            return 1;
        }
        keys++;
        struct termios now;
        tcgetattr(0, &now);
        int raw = !(now.c_lflag & (ICANON | ECHO)) && !(now.c_iflag & ICRNL) &&
                  now.c_lflag == want.c_lflag && now.c_iflag == want.c_iflag &&
                  now.c_oflag == want.c_oflag && now.c_cc[VMIN] == want.c_cc[VMIN] &&
                  now.c_cc[VTIME] == want.c_cc[VTIME];
        int fg = tcgetpgrp(0) == getpgrp();
        if (!raw || !fg) bad++;
        size(&rows, &cols);
        snprintf(line, sizeof line,
                 "key=%c raw=%s fg=%s icanon=%d echo=%d vmin=%d vtime=%d rows=%d cols=%d\r\n",
                 c >= 32 && c < 127 ? c : '?', raw ? "yes" : "no", fg ? "yes" : "no",
                 !!(now.c_lflag & ICANON), !!(now.c_lflag & ECHO), now.c_cc[VMIN],
                 now.c_cc[VTIME], rows, cols);
        say(1, line);
        snprintf(line, sizeof line, "fd3 key=%c\r\n", c >= 32 && c < 127 ? c : '?');
        say(3, line);
        if (c == 'q') {
            if (bad)
                snprintf(line, sizeof line, "VERDICT FAIL keys=%d bad=%d\r\n", keys, bad);
            else
                snprintf(line, sizeof line, "VERDICT OK keys=%d\r\n", keys);
            say(1, line);
            tcsetattr(0, TCSANOW, &orig);
            return bad ? 1 : 0;
        }
    }
}
