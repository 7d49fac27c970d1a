/* unsaveable: holds an io_uring instance, which ckpt cannot save. Prints
 * "uring fd N" once, then "tick N" every 100 ms; when STOPFILE (argv[1])
 * exists, checks the ring is still open and prints "VERDICT OK" or
 * "VERDICT FAIL <why>". */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *stopfile = argc > 1 ? argv[1] : "/nonexistent";
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsigned char params[120];
    memset(params, 0, sizeof params);
    int ring = (int)syscall(425 /* io_uring_setup */, 4, params);
    if (ring < 0) {
        printf("VERDICT FAIL io_uring_setup failed\n");
        return 1;
    }
    printf("uring fd %d\n", ring);
    for (long n = 1;; n++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("tick %ld\n", n);
        if (access(stopfile, F_OK) == 0) break;
    }
    if (fcntl(ring, F_GETFD) < 0) {
        printf("VERDICT FAIL the ring is closed\n");
        return 1;
    }
    printf("VERDICT OK\n");
    return 0;
}
