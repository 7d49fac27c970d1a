/* counter: prints "count N" every COUNTER_MS milliseconds (default 200).
 * Each tick it verifies a checksum over its own state (an array it keeps
 * rewriting) and that the count moved by exactly one, printing
 * "VERDICT FAIL <why>" and exiting 1 if not. With an argument STOPFILE it
 * prints "VERDICT OK count N" and exits 0 once that file exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 4096
static struct {
    long count;
    unsigned long data[N];
    unsigned long sum;
} st;

static unsigned long checksum(void) {
    unsigned long s = 1469598103934665603UL;
    for (int i = 0; i < N; i++) s = (s ^ st.data[i]) * 1099511628211UL;
    return s ^ (unsigned long)st.count;
}

int main(int argc, char **argv) {
    const char *stop = argc > 1 ? argv[1] : NULL;
    const char *ms_env = getenv("COUNTER_MS");
    long ms = ms_env ? atol(ms_env) : 200;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 0; i < N; i++) st.data[i] = (unsigned long)i * 2654435761UL;
    st.sum = checksum();
    for (;;) {
        long before = st.count;
        if (checksum() != st.sum) {
            printf("VERDICT FAIL checksum mismatch at count %ld\n", st.count);
            return 1;
        }
        st.count++;
        st.data[st.count % N] += (unsigned long)st.count;
        st.sum = checksum();
        if (st.count != before + 1) {
            printf("VERDICT FAIL count jumped from %ld to %ld\n", before, st.count);
            return 1;
        }
        printf("count %ld\n", st.count);
        if (stop && access(stop, F_OK) == 0) {
            printf("VERDICT OK count %ld\n", st.count);
            return 0;
        }
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}
