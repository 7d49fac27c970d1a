/* execl, execle, execlp: variadic, so defined in C, not Rust (stable Rust
 * cannot define a C variadic function); glibc's own call its internal
 * __execve, which no preload sees. Each collects its arguments into an
 * array on the stack (no malloc, as glibc does) and goes on in Rust
 * (interpose.rs, ckpt_writer_exec_list): a program that cannot carry the
 * writer is reported, then the real execv, execve or execvp runs.
 * exports.map (build.rs) exports the three from libckpt_writer.so. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>

/* mode: 0 execl (environ), 1 execle (envp), 2 execlp (PATH, environ). */
int ckpt_writer_exec_list(const char *path, char *const argv[], char *const envp[], int mode);

enum { MAX_ARGS = 1 << 20 };

/* `arg` and the arguments in `ap` up to NULL (then envp for execle). */
static int exec_list(const char *path, const char *arg, va_list ap, int mode) {
    va_list c;
    va_copy(c, ap);
    ptrdiff_t n = 0;
    if (arg)
        for (n = 1; va_arg(c, char *) && n < MAX_ARGS; n++)
            ;
    va_end(c);
    if (n >= MAX_ARGS) {
        errno = E2BIG;
        return -1;
    }
    char *argv[n + 1];
    argv[0] = (char *)arg;
    for (ptrdiff_t i = 1; i <= n; i++) argv[i] = va_arg(ap, char *);
    char *const *envp = mode == 1 ? va_arg(ap, char *const *) : NULL;
    return ckpt_writer_exec_list(path, argv, envp, mode);
}

int execl(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(path, arg, ap, 0);
    va_end(ap);
    return r;
}

int execle(const char *path, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(path, arg, ap, 1);
    va_end(ap);
    return r;
}

int execlp(const char *file, const char *arg, ...) {
    va_list ap;
    va_start(ap, arg);
    int r = exec_list(file, arg, ap, 2);
    va_end(ap);
    return r;
}
