/* latejoin: a parent reads a numbered stream from a child it forked and
 * exec'd, through a pipe; the child's writer is kept from connecting to
 * the coordinator (the writer's test-only switch CKPT_TEST_HOLD_CONNECT,
 * set for the child alone) while the child runs and writes, like a
 * compiler exec'd by `cc` just before a checkpoint whose writer has not
 * connected yet when its parent stops.
 *
 *   latejoin STOPFILE HOLDFILE
 *
 * The parent prints "child <pid>", then reads the stream: 32-bit
 * little-endian words 0, 1, 2, ... that the child writes, 1024 at a time
 * every 10 ms, until STOPFILE exists; then the child closes its end and
 * exits 0. Every word is checked: one lost or doubled (the child went on
 * writing after the parent's image saved the pipe's bytes, or came back
 * from an older moment than the parent) prints
 *   VERDICT FAIL word <k> is <v>
 * Progress: "tick got=<words>" every 25600 words. At end-of-file the
 * parent waits for the child (a child missing after a restart fails with
 * ECHILD) and prints "VERDICT OK <n> words in order, child exited 0". */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORDS 1024

static void child(const char *stop, int w) {
    uint32_t buf[WORDS], next = 0;
    while (access(stop, F_OK) != 0) {
        for (int i = 0; i < WORDS; i++) buf[i] = next + (uint32_t)i;
        size_t off = 0;
        while (off < sizeof buf) {
            ssize_t n = write(w, (char *)buf + off, sizeof buf - off);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                printf("VERDICT FAIL child: write: %s\n", strerror(errno));
                exit(1);
            }
            off += (size_t)n;
        }
        next += WORDS;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    close(w);
    exit(0);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "--child") == 0) child(argv[2], atoi(argv[3]));
    if (argc != 3) {
        fprintf(stderr, "usage: latejoin STOPFILE HOLDFILE\n");
        return 2;
    }
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        char fd[16];
        close(p[0]);
        snprintf(fd, sizeof fd, "%d", p[1]);
        setenv("CKPT_TEST_HOLD_CONNECT", argv[2], 1);
        execl(argv[0], "latejoin", "--child", argv[1], fd, (char *)NULL);
        printf("VERDICT FAIL exec: %s\n", strerror(errno));
        _exit(1);
    }
    close(p[1]);
    printf("child %d\n", (int)pid);
    unsigned char buf[4 * WORDS];
    size_t have = 0;
    uint64_t got = 0, next_tick = 25 * WORDS;
    for (;;) {
        ssize_t n = read(p[0], buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            printf("VERDICT FAIL read: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0) break;
        have += (size_t)n;
        size_t words = have / 4;
        for (size_t i = 0; i < words; i++) {
            uint32_t v;
            memcpy(&v, buf + 4 * i, 4);
            if (v != (uint32_t)got) {
                printf("VERDICT FAIL word %llu is %u\n", (unsigned long long)got, v);
                return 1;
            }
            got++;
        }
        memmove(buf, buf + 4 * words, have - 4 * words);
        have -= 4 * words;
        if (got >= next_tick) {
            printf("tick got=%llu\n", (unsigned long long)got);
            next_tick += 25 * WORDS;
        }
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) {
        printf("VERDICT FAIL waitpid: %s\n", strerror(errno));
        return 1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || have != 0) {
        printf("VERDICT FAIL child status 0x%x, %zu bytes left over\n", st, have);
        return 1;
    }
    printf("VERDICT OK %llu words in order, child exited 0\n", (unsigned long long)got);
    return 0;
}
