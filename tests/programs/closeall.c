/* closeall STOPFILE: a program that closes every fd it did not open, as
 * daemons do, first with closefrom(3) and later with close_range(2); each
 * time it checks that the fds it opened itself are gone. The writer keeps
 * its own (the coordinator socket, its log), so the program stays under
 * checkpoint control. Prints "tick N" every 100 ms, "VERDICT FAIL ..." at
 * once if one of its own fds survived, "VERDICT OK" when STOPFILE exists. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void check_closed(int fd, const char *how) {
    if (fcntl(fd, F_GETFD) != -1) {
        printf("VERDICT FAIL fd %d survived %s\n", fd, how);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    int a = open("/dev/null", O_RDONLY), b = open("/dev/zero", O_RDONLY);
    closefrom(3);
    check_closed(a, "closefrom");
    check_closed(b, "closefrom");
    for (long n = 1;; n++) {
        if (n == 5) {
            int c = open("/dev/null", O_RDONLY);
            close_range(3, ~0U, 0);
            check_closed(c, "close_range");
        }
        printf("tick %ld\n", n);
        if (access(argv[1], F_OK) == 0) {
            printf("VERDICT OK\n");
            return 0;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}
