/* The boot benchmark's stopwatch (tests/realkvm/bench.sh), one static binary in the outer
 * guest:
 *
 *   time-to-init MARKER LOG TIMEOUT_S COMMAND [ARGS...]
 *
 * starts COMMAND (a VMM) with its stdout and stderr on a pipe and copies what it prints to
 * LOG (without '\r'). At the first line containing MARKER it takes the time since just
 * before the fork, sums KVM's exit counters of the live VM from debugfs
 * (/sys/kernel/debug/kvm/<pid>-<fd>/, which vanish with the VM), stops COMMAND (SIGTERM,
 * SIGKILL after 10 s) and prints
 *
 *   secs=S exits=E io=I mmio=M halt=H line=<the marker line>
 *
 * Exit 0 then; 1 (and "no-init") when COMMAND ended or TIMEOUT_S passed first.
 * A shell pipeline (fifo, tr, read, $(...) forks) would add tens of milliseconds under TCG
 * to every sample, the same for both VMMs, which pulls their ratio towards 1. */
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KVM_DEBUGFS "/sys/kernel/debug/kvm"
#define STOP_GRACE_S 10

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The sum of one counter over every VM directory ("<pid>-<fd>") in KVM's debugfs. */
static unsigned long long kvm_counter(const char *name) {
    unsigned long long sum = 0;
    DIR *dir = opendir(KVM_DEBUGFS);
    if (!dir) return 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (!strchr(e->d_name, '-')) continue;
        char path[512];
        snprintf(path, sizeof path, KVM_DEBUGFS "/%s/%s", e->d_name, name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        unsigned long long v;
        if (fscanf(f, "%llu", &v) == 1) sum += v;
        fclose(f);
    }
    closedir(dir);
    return sum;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MARKER LOG TIMEOUT_S COMMAND [ARGS...]\n", argv[0]);
        return 2;
    }
    const char *marker = argv[1];
    FILE *log = fopen(argv[2], "w");
    double timeout = atof(argv[3]);
    if (!log || timeout <= 0) {
        fprintf(stderr, "time-to-init: cannot open %s, or bad timeout %s\n", argv[2], argv[3]);
        return 2;
    }
    int out[2];
    if (pipe(out) != 0) return 2;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[0]);
        close(out[1]);
        if (!freopen("/dev/null", "r", stdin)) _exit(127);
        execvp(argv[4], &argv[4]);
        _exit(127);
    }
    close(out[1]);
    char line[4096];
    size_t len = 0;
    int found = 0;
    while (!found) {
        int left_ms = (int)((t0 + timeout - now_s()) * 1000);
        if (left_ms <= 0) break;
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, left_ms) <= 0) continue;
        char buf[4096];
        ssize_t n = read(out[0], buf, sizeof buf);
        if (n <= 0) break; /* the VMM ended */
        for (ssize_t i = 0; i < n && !found; i++) {
            char c = buf[i];
            if (c == '\r') continue;
            fputc(c, log);
            if (c != '\n') {
                if (len + 1 < sizeof line) line[len++] = c;
                continue;
            }
            line[len] = 0;
            if (strstr(line, marker)) {
                double secs = now_s() - t0;
                printf("secs=%.3f exits=%llu io=%llu mmio=%llu halt=%llu line=%s\n", secs,
                       kvm_counter("exits"), kvm_counter("io_exits"), kvm_counter("mmio_exits"),
                       kvm_counter("halt_exits"), line);
                found = 1;
            }
            len = 0;
        }
    }
    if (!found) printf("no-init\n");
    fflush(stdout);
    fclose(log);
    /* SIGTERM, which both VMMs handle by stopping their vCPUs and exiting in order; SIGKILL
     * only for one that has not exited after STOP_GRACE_S. */
    kill(pid, SIGTERM);
    for (int i = 0; i < STOP_GRACE_S * 100; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid) return found ? 0 : 1;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return found ? 0 : 1;
}
