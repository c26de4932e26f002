/*
 * Reference loops for vmm-probe's two kernel-bound benchmarks, written as plainly as C
 * allows, to check that the probe's own loops add nothing measurable (the requirement:
 * within 10% on the host). Same operations, same batching as the probe:
 *
 *   null syscall: syscall(SYS_getppid), the clock read every 10 000 calls;
 *   fork+exec:    fork, execve(PROBE, ["vmm-probe", "true"], []) in the child
 *                 (_exit(127) if it fails), waitpid; the clock read after each.
 *
 * Usage: loops PROBE [BUDGET_MS]     (PROBE: path of the vmm-probe binary; budget 200 ms)
 * Build: gcc -O2 -o loops loops.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PROBE [BUDGET_MS]\n", argv[0]);
		return 2;
	}
	const char *probe = argv[1];
	double budget = (argc > 2 ? atof(argv[2]) : 200.0) / 1e3;
	char *child_argv[] = { "vmm-probe", "true", NULL };
	char *child_envp[] = { NULL };
	double start, t;
	long n;

	n = 0;
	start = now();
	do {
		for (int i = 0; i < 10000; i++)
			syscall(SYS_getppid);
		n += 10000;
	} while ((t = now()) - start < budget);
	printf("null_syscall_ns %.1f\n", (t - start) * 1e9 / n);

	n = 0;
	start = now();
	do {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			execve(probe, child_argv, child_envp);
			_exit(127);
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0) {
			fprintf(stderr, "%s true did not exit 0\n", probe);
			return 1;
		}
		n++;
	} while ((t = now()) - start < budget);
	printf("fork_exec_us %.1f\n", (t - start) * 1e6 / n);
	return 0;
}
