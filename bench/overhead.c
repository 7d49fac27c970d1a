/* Run-time overhead workload (bench/overhead.py): times, with its own
 * CLOCK_MONOTONIC, a few kinds of work a program does between checkpoints
 * and prints one line per kind: "<kind> <ns>". Run natively and under
 * `ckpt launch` to see what the preloaded writer costs when no checkpoint
 * is taken. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static uint64_t now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void *nothing(void *a) { return a; }

int main(void) {
  uint64_t t;
  volatile uint64_t sink = 0;

  t = now(); /* pure computation */
  uint64_t x = 1;
  for (long i = 0; i < 200000000; i++) x = x * 6364136223846793005ull + 1442695040888963407ull;
  sink = x;
  printf("compute %llu\n", (unsigned long long)(now() - t));

  t = now(); /* malloc/free of mixed sizes */
  for (long i = 0; i < 5000000; i++) { void *p = malloc(16 + (i % 4096)); ((char *)p)[0] = 1; free(p); }
  printf("malloc %llu\n", (unsigned long long)(now() - t));

  t = now(); /* small syscalls */
  for (long i = 0; i < 2000000; i++) sink += syscall(SYS_getppid);
  printf("syscall %llu\n", (unsigned long long)(now() - t));

  int fd = open("/dev/null", O_WRONLY);
  char buf[64]; memset(buf, 'x', sizeof buf);
  t = now(); /* write(2) */
  for (long i = 0; i < 1000000; i++) sink += write(fd, buf, sizeof buf);
  printf("write %llu\n", (unsigned long long)(now() - t));
  close(fd);

  t = now(); /* thread creation */
  for (int i = 0; i < 2000; i++) { pthread_t th; pthread_create(&th, 0, nothing, 0); pthread_join(th, 0); }
  printf("thread %llu\n", (unsigned long long)(now() - t));

  t = now(); /* fork + exit + wait */
  for (int i = 0; i < 300; i++) { pid_t p = fork(); if (p == 0) _exit(0); waitpid(p, 0, 0); }
  printf("fork %llu\n", (unsigned long long)(now() - t));

  t = now(); /* fork + exec of /bin/true + wait: the child loads the writer */
  for (int i = 0; i < 200; i++) {
    pid_t p = fork();
    if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
    waitpid(p, 0, 0);
  }
  printf("exec %llu\n", (unsigned long long)(now() - t));

  t = now(); /* clock_gettime through the vdso */
  for (long i = 0; i < 10000000; i++) sink += now();
  printf("clock %llu\n", (unsigned long long)(now() - t));
  (void)sink;
  return 0;
}
