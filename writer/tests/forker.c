/* Test program: forks once; parent and child each print a counter. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *who = fork() == 0 ? "child" : "parent";
    for (long n = 1;; n++) {
        printf("%s %ld\n", who, n);
        usleep(50000);
    }
}
