/* single: a single-threaded program stays single-threaded for glibc under
 * ckpt. The writer's threads are made without pthread_create, so glibc's
 * __libc_single_threaded stays 1 and malloc, stdio and the cancellable
 * wrappers keep their single-threaded fast paths between checkpoints, and
 * after restarts. Prints "tick N single=1 threads=T" every 100 ms (T: the
 * tasks in /proc/self/task, the writer's included), after a little malloc,
 * stdio and write(2) work; "VERDICT FAIL ..." at once if glibc thinks the
 * process multi-threaded; when STOPFILE (argv[1]) exists it starts and
 * joins a thread of its own (glibc must then say multi-threaded) and
 * prints "VERDICT OK ...". */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

static int tasks(void) {
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void *nothing(void *a) { return a; }

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *stop = argc > 1 ? argv[1] : "/nonexistent";
    long sum = 0;
    for (long tick = 1;; tick++) {
        for (int i = 0; i < 1000; i++) {
            char *p = malloc(16 + i * 7);
            p[0] = (char)i;
            sum += p[0];
            free(p);
        }
        if (!__libc_single_threaded) {
            printf("VERDICT FAIL glibc thinks the process multi-threaded at tick %ld\n", tick);
            return 1;
        }
        printf("tick %ld single=%d threads=%d\n", tick, __libc_single_threaded, tasks());
        if (access(stop, F_OK) == 0) {
            pthread_t t;
            if (pthread_create(&t, NULL, nothing, NULL) || pthread_join(t, NULL)) {
                printf("VERDICT FAIL pthread_create after restart\n");
                return 1;
            }
            if (__libc_single_threaded) {
                printf("VERDICT FAIL still single-threaded after pthread_create\n");
                return 1;
            }
            printf("VERDICT OK single-threaded for %ld ticks (sum %ld)\n", tick, sum);
            return 0;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}
