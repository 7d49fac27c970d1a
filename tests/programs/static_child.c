/* static_child: built with `cc -static` by tests/tests/spawn.rs, so the
 * writer cannot be preloaded into it. Prints "tick static pid=<pid> n=<n>"
 * every 100 ms until the file named by its argument exists, then exits
 * 30. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long n = 0;
    while (access(argv[1], F_OK) != 0) {
        printf("tick static pid=%d n=%ld\n", getpid(), ++n);
        fflush(stdout);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 30;
}
