/* shmtree: a fork tree of depth 3 that shares memory.
 *
 *   root ─┬─ a ── a1 ── a2
 *         └─ b
 *
 * Before forking, the root maps
 *   - an anonymous shared region (MAP_SHARED | MAP_ANONYMOUS): a
 *     process-shared mutex, one counter per process, their total, and
 *     BIG_PAGES pages of a pattern the root wrote once;
 *   - a POSIX shm segment (shm_open, /dev/shm): a process-shared
 *     semaphore, one counter per process and their total;
 *   - with the argument "sysv": a System V segment (shmget/shmat) of the
 *     same layout as the POSIX one (marked for removal at once), a System
 *     V semaphore set (semaphore 0 guards the segment, semaphore 1 holds
 *     42, checked by the root) and a System V message queue a2 sends its
 *     count to the root on (type 1), holding a sentinel message (type 2)
 *     the root reads and checks only when it stops. The processes use the
 *     ids they got at the start, never looking them up again;
 *   - a regular file, STOPFILE.data, mapped shared (its pages live in the
 *     file), and a memfd mapped shared (the root keeps its descriptor,
 *     writes a number through it every tick and reads it back through
 *     the mapping: one object, not two): one
 *     counter per process in each, incremented atomically (a lock in the
 *     file would stay taken if a process was killed holding it: the file
 *     is not rolled back to the checkpoint);
 *   - a pipe from a2 to a1.
 * Every process, every STEP_MS: takes the mutex, increments its counter
 * and the total, checks total == sum of counters, releases it; does the
 * same in the POSIX segment under the semaphore (and in the SysV one
 * under the SysV semaphore); checks a few bytes of the pattern. a2 then
 * writes its counter's value to the pipe; a1 reads it and checks that
 * the shared counter of a2 it sees is at least that value (a parent
 * reading a child's writes: it fails when the memory is not shared).
 * With sysv, a2 also sends its count as a message; the root receives it
 * and checks the same.
 *
 * The root prints, every TICK_MS,
 *   tick n=<n> total=<t> ptotal=<p> stotal=<s> c=<c0>,..,<c4> f=<f0>,..,<f4> m=<m0>,..,<m4>
 * (c: the anonymous counters, f: the file's, m: the memfd's)
 * Any broken invariant prints "VERDICT FAIL <role>: ..." and exits 1.
 * With sysv, the root prints "sysv ids shm=<id> sem=<id> msg=<id>" when
 * it starts and again when it stops.
 * Usage: shmtree STOPFILE [sysv]. Once STOPFILE exists, the root sets
 * the stop flag; every process exits 0; the root reaps its children and
 * prints "VERDICT OK total=<t>" when every exit status is 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPROC 5
#define BIG_PAGES 8
#define STEP_MS 10
#define TICK_MS 100

enum { ROOT, A, B, A1, A2 };
static const char *names[NPROC] = {"root", "a", "b", "a1", "a2"};

struct anon {
    pthread_mutex_t m;
    volatile int stop;
    long count[NPROC];
    long total;
    unsigned seed;
    char pad[4096];
    unsigned char big[BIG_PAGES * 4096];
};

struct seg {
    sem_t sem; /* POSIX segment only */
    long count[NPROC];
    long total;
};

struct msg {
    long mtype;
    long value;
};

struct atomics {
    long count[NPROC];
};

static struct anon *an;
static struct atomics *fc, *mc;
static int mfd = -1;
static struct seg *ps, *ss;
static int semid = -1, msqid = -1, shmid_seen = -1, use_sysv;
static int me;
static char shm_name[64];

static void fail(const char *what, long a, long b) {
    printf("VERDICT FAIL %s: %s (%ld vs %ld)\n", names[me], what, a, b);
    fflush(stdout);
    exit(1);
}

static void nap(int ms) {
    struct timespec ts = {0, ms * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static unsigned char pattern(unsigned seed, size_t i) {
    return (unsigned char)((i * 131 + seed) % 251 + 1);
}

static long sum(const long *c) {
    long s = 0;
    for (int i = 0; i < NPROC; i++)
        s += c[i];
    return s;
}

static void sysv_sem(int op) {
    struct sembuf b = {0, (short)op, SEM_UNDO};
    while (semop(semid, &b, 1) < 0) {
        if (errno != EINTR)
            fail("semop", errno, 0);
    }
}

/* One step of this process. */
static void step(void) {
    pthread_mutex_lock(&an->m);
    an->count[me]++;
    an->total++;
    long t = an->total, s = sum(an->count);
    pthread_mutex_unlock(&an->m);
    if (t != s)
        fail("anonymous total != sum of counters", t, s);

    while (sem_wait(&ps->sem) < 0 && errno == EINTR) {
    }
    ps->count[me]++;
    ps->total++;
    t = ps->total;
    s = sum(ps->count);
    sem_post(&ps->sem);
    if (t != s)
        fail("POSIX shm total != sum of counters", t, s);

    if (use_sysv) {
        sysv_sem(-1);
        ss->count[me]++;
        ss->total++;
        t = ss->total;
        s = sum(ss->count);
        sysv_sem(1);
        if (t != s)
            fail("SysV shm total != sum of counters", t, s);
    }
    __atomic_fetch_add(&fc->count[me], 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&mc->count[me], 1, __ATOMIC_SEQ_CST);
    for (size_t i = (size_t)me * 997; i < sizeof an->big; i += 4093) {
        if (an->big[i] != pattern(an->seed, i))
            fail("pattern byte", an->big[i], pattern(an->seed, i));
    }
}

/* Reads a value a2 sent and checks the shared counter of a2 we see. */
static void check_seen(long v, const char *how) {
    pthread_mutex_lock(&an->m);
    long seen = an->count[A2];
    pthread_mutex_unlock(&an->m);
    if (seen < v) {
        printf("VERDICT FAIL %s: a2 sent %ld through %s but its shared counter reads %ld\n",
               names[me], v, how, seen);
        fflush(stdout);
        exit(1);
    }
}

static void run(int rfd, int wfd) {
    static long n;
    for (;;) {
        if (an->stop)
            exit(0);
        step();
        if (me == A2) {
            pthread_mutex_lock(&an->m);
            long v = an->count[A2];
            pthread_mutex_unlock(&an->m);
            if (write(wfd, &v, sizeof v) != sizeof v && errno != EINTR)
                fail("pipe write", errno, 0);
            if (use_sysv) {
                struct msg m = {1, v};
                /* IPC_NOWAIT: a full queue just skips a message. */
                msgsnd(msqid, &m, sizeof m.value, IPC_NOWAIT);
            }
        }
        if (me == A1) {
            long v;
            ssize_t r = read(rfd, &v, sizeof v);
            if (r == sizeof v)
                check_seen(v, "the pipe");
            else if (r < 0 && errno != EINTR && errno != EAGAIN)
                fail("pipe read", errno, 0);
        }
        if (me == ROOT) {
            if (use_sysv) {
                struct msg m;
                while (msgrcv(msqid, &m, sizeof m.value, 1, IPC_NOWAIT) == sizeof m.value)
                    check_seen(m.value, "the message queue");
                int v = semctl(semid, 1, GETVAL);
                if (v != 42)
                    fail("SysV semaphore 1 value", v, 42);
            }
            long echo = n + 1000;
            if (pwrite(mfd, &echo, sizeof echo, 4096 - sizeof echo) != sizeof echo)
                fail("pwrite to the memfd", errno, 0);
            long seen = *(volatile long *)((char *)mc + 4096 - sizeof echo);
            if (seen != echo)
                fail("a write through the memfd's descriptor is not in its mapping", seen, echo);
            if (++n % (TICK_MS / STEP_MS) == 0) {
                printf("tick n=%ld total=%ld ptotal=%ld stotal=%ld c=%ld,%ld,%ld,%ld,%ld "
                       "f=%ld,%ld,%ld,%ld,%ld m=%ld,%ld,%ld,%ld,%ld\n",
                       n / (TICK_MS / STEP_MS), an->total, ps->total, use_sysv ? ss->total : 0L,
                       an->count[0], an->count[1], an->count[2], an->count[3], an->count[4],
                       fc->count[0], fc->count[1], fc->count[2], fc->count[3], fc->count[4],
                       mc->count[0], mc->count[1], mc->count[2], mc->count[3], mc->count[4]);
                fflush(stdout);
            }
            return;
        }
        nap(STEP_MS);
    }
}

/* Forks process `who`, which forks its own child (a: a1, a1: a2), keeps
 * the pipe ends it uses and runs; returns its pid in the parent. */
static pid_t spawn(int who, int rfd, int wfd) {
    fflush(stdout);
    pid_t p = fork();
    if (p < 0) {
        perror("fork");
        exit(2);
    }
    if (p > 0)
        return p;
    me = who;
    if (who == A)
        spawn(A1, rfd, wfd);
    if (who == A1)
        spawn(A2, rfd, wfd);
    if (who != A1)
        close(rfd);
    if (who != A2)
        close(wfd);
    run(rfd, wfd);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: shmtree STOPFILE [sysv]\n");
        return 2;
    }
    const char *stopfile = argv[1];
    use_sysv = argc > 2 && strcmp(argv[2], "sysv") == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);

    an = mmap(NULL, sizeof *an, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (an == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutex_init(&an->m, &ma);
    an->seed = (unsigned)getpid();
    for (size_t i = 0; i < sizeof an->big; i++)
        an->big[i] = pattern(an->seed, i);

    snprintf(shm_name, sizeof shm_name, "/ckpt-shmtree-%d", (int)getpid());
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || ftruncate(fd, 4 * 4096) < 0) {
        perror("shm_open");
        return 2;
    }
    ps = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ps == MAP_FAILED) {
        perror("mmap shm");
        return 2;
    }
    close(fd);
    sem_init(&ps->sem, 1, 1);

    char data[4096];
    snprintf(data, sizeof data, "%s.data", stopfile);
    fd = open(data, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) < 0) {
        perror(data);
        return 2;
    }
    fc = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    fd = memfd_create("shmtree", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, 4096) < 0) {
        perror("memfd_create");
        return 2;
    }
    mc = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    mfd = fd; /* kept: the root writes through it */
    if (fc == MAP_FAILED || mc == MAP_FAILED) {
        perror("mmap file/memfd");
        return 2;
    }

    if (use_sysv) {
        int shmid = shmget(IPC_PRIVATE, 2 * 4096, IPC_CREAT | 0600);
        semid = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600);
        msqid = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
        if (shmid < 0 || semid < 0 || msqid < 0) {
            perror("System V IPC");
            return 2;
        }
        shmid_seen = shmid;
        ss = shmat(shmid, NULL, 0);
        if (ss == (void *)-1) {
            perror("shmat");
            return 2;
        }
        /* Gone once the last process detaches it. */
        shmctl(shmid, IPC_RMID, NULL);
        struct msg sentinel = {2, 0x5e17};
        if (semctl(semid, 0, SETVAL, 1) < 0 || semctl(semid, 1, SETVAL, 42) < 0 ||
            msgsnd(msqid, &sentinel, sizeof sentinel.value, 0) < 0) {
            perror("semctl/msgsnd");
            return 2;
        }
    }

    if (use_sysv)
        printf("sysv ids shm=%d sem=%d msg=%d\n", shmid_seen, semid, msqid);
    int p[2];
    if (pipe(p) < 0) {
        perror("pipe");
        return 2;
    }
    me = ROOT;
    pid_t a = spawn(A, p[0], p[1]);
    pid_t b = spawn(B, p[0], p[1]);
    close(p[0]);
    close(p[1]);

    while (access(stopfile, F_OK) != 0) {
        run(-1, -1);
        nap(STEP_MS);
    }
    an->stop = 1;
    int bad = 0;
    pid_t kids[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        int st;
        pid_t r;
        while ((r = waitpid(kids[i], &st, 0)) < 0 && errno == EINTR) {
        }
        if (r != kids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            printf("VERDICT FAIL root: child %d ended with status %#x\n", (int)kids[i], st);
            bad = 1;
        }
    }
    shm_unlink(shm_name);
    if (use_sysv) {
        struct msg m;
        if (msgrcv(msqid, &m, sizeof m.value, 2, IPC_NOWAIT) != sizeof m.value || m.value != 0x5e17) {
            printf("VERDICT FAIL root: the sentinel message is not in the queue\n");
            bad = 1;
        }
        printf("sysv ids shm=%d sem=%d msg=%d\n", shmid_seen, semid, msqid);
        semctl(semid, 0, IPC_RMID);
        msgctl(msqid, IPC_RMID, NULL);
    }
    if (bad)
        return 1;
    printf("VERDICT OK total=%ld ptotal=%ld\n", an->total, ps->total);
    return 0;
}
