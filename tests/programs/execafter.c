/* execafter STOPFILE DIR: spins looking in DIR (its checkpoint directory)
 * for an image being written (a name ending in ".ckpt.tmp"). A checkpoint
 * stops its threads while the image is written and lets them go before
 * the writer syncs and renames it: the first time it sees such a file,
 * that moment has come, and it execs itself with "after", which prints
 * "exec'd while an image was being finished" and then ticks ("tick after
 * n=<n>") every 100 ms until STOPFILE exists ("VERDICT OK"). Before, it
 * prints "ready", then "spinning" every 100 ms. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int image_in_progress(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 9 && strcmp(e->d_name + n - 9, ".ckpt.tmp") == 0) found = 1;
    }
    closedir(d);
    return found;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[2], "after") == 0) {
        printf("exec'd while an image was being finished\n");
        long n = 0;
        while (access(argv[1], F_OK) != 0) {
            printf("tick after n=%ld\n", ++n);
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
        printf("VERDICT OK\n");
        return 0;
    }
    printf("ready\n");
    struct timespec said;
    clock_gettime(CLOCK_MONOTONIC, &said);
    for (;;) {
        if (image_in_progress(argv[2])) {
            char *args[] = {argv[0], argv[1], "after", NULL};
            execv("/proc/self/exe", args);
            return 1;
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - said.tv_sec) * 1000000000L + (t.tv_nsec - said.tv_nsec) > 100000000L) {
            printf("spinning\n");
            said = t;
        }
    }
}
