/* The nested tier's stopwatch for whole commands (the snapshot benchmark in
 * cases/snapshot.sh), one static binary in the outer guest:
 *
 *   elapsed RESULTS COMMAND [ARGS...]
 *
 * runs COMMAND (its stdio inherited) and appends "MS STATUS" to the file RESULTS: the
 * wall time from just before the fork to its end, in ms, and its exit status (128+N for
 * signal N). Exits with COMMAND's status. busybox's date has no sub-second clock, and a
 * shell's forks around a stopwatch would add milliseconds under TCG to every sample. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: elapsed RESULTS COMMAND [ARGS...]\n");
        return 2;
    }
    double start = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        perror("elapsed: fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror("elapsed: exec");
        _exit(127);
    }
    int wstatus, status;
    if (waitpid(pid, &wstatus, 0) < 0) {
        perror("elapsed: waitpid");
        return 1;
    }
    double ms = now_ms() - start;
    status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
    FILE *out = fopen(argv[1], "a");
    if (!out) {
        perror("elapsed: results file");
        return 1;
    }
    fprintf(out, "%.1f %d\n", ms, status);
    fclose(out);
    return status;
}
