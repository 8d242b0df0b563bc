/* spawnloop: the anchor of bench_spawn.sh: N processes of `sh -c true`, at
 * most K at once, started with posix_spawn and reaped with waitpid, as fast
 * as they go. Prints `spawns_per_s=X n=N in_flight=K`.
 *   spawnloop 1000 8 */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: spawnloop N K\n");
		return 2;
	}
	long n = atol(argv[1]), k = atol(argv[2]);
	if (n < 1 || k < 1) {
		fprintf(stderr, "spawnloop: N and K >= 1\n");
		return 2;
	}
	static char sh[] = "sh", c[] = "-c", cmd[] = "true";
	char *args[] = {sh, c, cmd, NULL};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long started = 0, running = 0;
	while (started < n || running > 0) {
		while (started < n && running < k) {
			pid_t pid;
			if (posix_spawn(&pid, "/bin/sh", NULL, NULL, args, environ) != 0) {
				perror("posix_spawn");
				return 1;
			}
			started++;
			running++;
		}
		int status;
		if (wait(&status) < 0) {
			perror("wait");
			return 1;
		}
		running--;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("spawns_per_s=%.0f n=%ld in_flight=%ld\n", (double)n / s, n, k);
	return 0;
}
