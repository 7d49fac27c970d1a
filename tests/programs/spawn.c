/* spawn: children made every way a program makes them, each a process
 * that ticks until the stop file exists:
 *   vfork        vfork() + execv(self, "child vfork")
 *   posix_spawn  posix_spawn(self, "child posix_spawn")
 *   system       system("self child system") from a thread (through sh)
 *   popen        popen("self child popen", "r"): its ticks come back
 *                through the pipe and the parent prints "popen got=<n>"
 *   clone        syscall(SYS_clone, SIGCHLD): no exec, no atfork handler
 *   chain        fork + exec sh -c 'exec sh -c "exec self child chain"'
 * Every child prints, every 100 ms,
 *   tick <role> pid=<pid> ppid=<ppid> n=<n>
 * and checks that getpid() and getppid() did not change (a wrong value
 * prints "VERDICT FAIL ..." and exits 1). Once STOPFILE exists each child
 * exits with its own code (20 + its index); the parent waits for every one
 * (waitpid, system's and pclose's status), checks each code and prints
 * "VERDICT OK ..." or "VERDICT FAIL ...".
 *
 * Usage: spawn STOPFILE [static|noenv|execl|execlp PROGRAM | asmclone]
 *                                                          (the parent)
 *        spawn STOPFILE child ROLE         (a child made by exec)
 * With "static PROGRAM" the parent makes only one child: fork + exec of
 * PROGRAM (a static binary that cannot carry the preload); at the stop it
 * prints how that child ended: "static child exited <code>" or "static
 * child killed by signal <n>". With "noenv PROGRAM" the same, but the
 * exec gets an empty environment (no LD_PRELOAD). With "execl PROGRAM"
 * the exec is execl(PROGRAM, ...); with "execlp PROGRAM", execlp of its
 * base name with PATH set to its directory. With "asmclone" the
 * child is made by clone(SIGCHLD) through an inline syscall instruction
 * and ticks like the static child ("tick static ..."), without an exec. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static const char *stopfile;
static char self[4096];

static const char *roles[] = {"vfork", "posix_spawn", "system", "popen", "clone", "chain"};
enum { VFORK, POSIX_SPAWN, SYSTEM, POPEN, CLONE, CHAIN, NROLES };

static int stopped(void) { return access(stopfile, F_OK) == 0; }

static void nap(void) {
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
}

static int role_index(const char *role) {
    for (int i = 0; i < NROLES; i++)
        if (strcmp(roles[i], role) == 0) return i;
    return -1;
}

/* A child's life: tick (to `out`) until the stop file exists. */
static void child_main(const char *role, FILE *out) {
    pid_t pid = getpid(), ppid = getppid();
    long n = 0;
    while (!stopped()) {
        pid_t p = getpid(), pp = getppid();
        if (p != pid || pp != ppid) {
            fprintf(out, "VERDICT FAIL %s: pid %d ppid %d, were %d %d\n", role, p, pp, pid, ppid);
            fflush(out);
            exit(1);
        }
        fprintf(out, "tick %s pid=%d ppid=%d n=%ld\n", role, p, pp, ++n);
        fflush(out);
        nap();
    }
    exit(20 + role_index(role));
}

static void *run_system(void *arg) {
    (void)arg;
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "'%s' '%s' child system", self, stopfile);
    long st = system(cmd);
    return (void *)st;
}

static void *run_popen(void *arg) {
    (void)arg;
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "'%s' '%s' child popen", self, stopfile);
    FILE *f = popen(cmd, "r");
    if (!f) return (void *)-1L;
    char line[256];
    long got = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "tick popen ", 11) == 0) {
            got++;
            printf("popen got=%ld\n", got);
            fflush(stdout);
        } else {
            fputs(line, stdout);
            fflush(stdout);
        }
    }
    long st = pclose(f);
    return (void *)st;
}

/* The exit code of wait status `st` for child `role`, or a failure line. */
static int check(const char *role, long st, int *ok) {
    int want = 20 + role_index(role);
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != want) {
        printf("VERDICT FAIL %s: status %#lx, want exit %d\n", role, st, want);
        *ok = 0;
        return -1;
    }
    return WEXITSTATUS(st);
}

static long reap(pid_t pid) {
    int st;
    pid_t r;
    do r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    return r == pid ? st : -1;
}

static int static_wait(pid_t c);

/* clone(SIGCHLD) by a syscall instruction: nothing the writer can
 * interpose sees it. The child returns here on a copy of our stack. */
static long asm_clone(void) {
    long ret;
    register long r10 __asm__("r10") = 0;
    register long r8 __asm__("r8") = 0;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "0"((long)SYS_clone), "D"((long)SIGCHLD), "S"(0L), "d"(0L), "r"(r10),
                       "r"(r8)
                     : "rcx", "r11", "memory");
    return ret;
}

/* How static_parent's child execs PROGRAM. */
enum { BY_EXECV, BY_EMPTY_ENV, BY_ASMCLONE, BY_EXECL, BY_EXECLP };

static int static_parent(const char *prog, int how) {
    if (how == BY_ASMCLONE) {
        long c = asm_clone();
        if (c == 0) {
            long n = 0;
            while (!stopped()) {
                printf("tick static pid=%d n=%ld\n", getpid(), ++n);
                fflush(stdout);
                nap();
            }
            _exit(30);
        }
        return static_wait((pid_t)c);
    }
    pid_t c = fork();
    if (c == 0) {
        char *args[] = {(char *)prog, (char *)stopfile, NULL};
        char *none[] = {NULL};
        if (how == BY_EMPTY_ENV)
            execve(prog, args, none);
        else if (how == BY_EXECL)
            execl(prog, prog, stopfile, (char *)NULL);
        else if (how == BY_EXECLP) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", prog);
            char *slash = strrchr(dir, '/');
            if (!slash) _exit(126);
            *slash = 0;
            setenv("PATH", dir, 1);
            execlp(slash + 1, prog, stopfile, (char *)NULL);
        } else
            execv(prog, args);
        _exit(127);
    }
    return static_wait(c);
}

static int static_wait(pid_t c) {
    printf("started static child pid=%d\n", c);
    fflush(stdout);
    long n = 0;
    while (!stopped()) {
        printf("tick parent pid=%d n=%ld\n", getpid(), ++n);
        fflush(stdout);
        nap();
    }
    long st = reap(c);
    if (st < 0)
        printf("VERDICT FAIL waitpid(static child %d): %s\n", c, strerror(errno));
    else if (WIFSIGNALED(st))
        printf("VERDICT OK static child killed by signal %d\n", (int)WTERMSIG(st));
    else
        printf("VERDICT OK static child exited %d\n", (int)WEXITSTATUS(st));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: spawn STOPFILE [child ROLE | static PROGRAM]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    stopfile = argv[1];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0) return 2;
    self[len] = 0;
    if (argc == 4 && strcmp(argv[2], "child") == 0) child_main(argv[3], stdout);
    if (argc == 4 && strcmp(argv[2], "static") == 0) return static_parent(argv[3], BY_EXECV);
    if (argc == 4 && strcmp(argv[2], "noenv") == 0) return static_parent(argv[3], BY_EMPTY_ENV);
    if (argc == 4 && strcmp(argv[2], "execl") == 0) return static_parent(argv[3], BY_EXECL);
    if (argc == 4 && strcmp(argv[2], "execlp") == 0) return static_parent(argv[3], BY_EXECLP);
    if (argc == 3 && strcmp(argv[2], "asmclone") == 0) return static_parent(NULL, BY_ASMCLONE);

    pid_t pids[NROLES] = {0};
    char *cargv[5] = {self, (char *)stopfile, "child", NULL, NULL};

    cargv[3] = "vfork";
    pids[VFORK] = vfork();
    if (pids[VFORK] == 0) {
        execv(self, cargv);
        _exit(127);
    }

    cargv[3] = "posix_spawn";
    if (posix_spawn(&pids[POSIX_SPAWN], self, NULL, NULL, cargv, environ) != 0) {
        printf("VERDICT FAIL posix_spawn: %s\n", strerror(errno));
        return 1;
    }

    pthread_t tsys, tpopen;
    pthread_create(&tsys, NULL, run_system, NULL);
    pthread_create(&tpopen, NULL, run_popen, NULL);

    long c = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (c == 0) child_main("clone", stdout);
    pids[CLONE] = c;

    pids[CHAIN] = fork();
    if (pids[CHAIN] == 0) {
        char cmd[8300];
        snprintf(cmd, sizeof cmd, "exec sh -c \"exec '%s' '%s' child chain\"", self, stopfile);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    printf("started vfork=%d posix_spawn=%d clone=%d chain=%d\n", pids[VFORK],
           pids[POSIX_SPAWN], pids[CLONE], pids[CHAIN]);

    long n = 0;
    while (!stopped()) {
        printf("tick parent pid=%d n=%ld\n", getpid(), ++n);
        nap();
    }
    int ok = 1;
    for (int i = 0; i < NROLES; i++)
        if (pids[i]) check(roles[i], reap(pids[i]), &ok);
    void *st;
    pthread_join(tsys, &st);
    check("system", (long)st, &ok);
    pthread_join(tpopen, &st);
    check("popen", (long)st, &ok);
    if (ok) printf("VERDICT OK every child exited with its code\n");
    return ok ? 0 : 1;
}
