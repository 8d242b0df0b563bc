/* writeloop: control writes per second on a file of the mount, from one or
 * more writers at once.
 *   writeloop MOUNT/mma/pipeline/max_workers 2000 [WRITERS]
 * Each round is open, one write of a number, close: one command, applied and
 * committed before write() returns. WRITERS processes (default 1) share the
 * N rounds, started together; the rate is N over the time from the start to
 * the last one's end. Prints `writes_per_s=X n=N writers=W`. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int write_rounds(const char *path, long n)
{
	for (long i = 0; i < n; i++) {
		char buf[16];
		int len = snprintf(buf, sizeof buf, "%ld\n", 1 + i % 8);
		int fd = open(path, O_WRONLY);
		if (fd < 0 || write(fd, buf, (size_t)len) != len) {
			perror(path);
			return 1;
		}
		if (close(fd) != 0) {
			perror(path);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: writeloop PATH N [WRITERS]\n");
		return 2;
	}
	long n = atol(argv[2]), writers = argc == 4 ? atol(argv[3]) : 1;
	if (n < 1 || writers < 1 || writers > 1024) {
		fprintf(stderr, "writeloop: N >= 1, WRITERS 1..1024\n");
		return 2;
	}
	/* the writers wait on a pipe, so they start together */
	int go[2];
	if (pipe(go) != 0) {
		perror("pipe");
		return 1;
	}
	for (long w = 0; w < writers; w++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 1;
		}
		if (pid == 0) {
			char c;
			close(go[1]);
			if (read(go[0], &c, 1) != 0)
				_exit(1);
			_exit(write_rounds(argv[1], n / writers + (w < n % writers)));
		}
	}
	close(go[0]);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	close(go[1]);   /* EOF: everyone starts */
	int failed = 0, status;
	while (wait(&status) > 0)
		failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (failed)
		return 1;
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("writes_per_s=%.0f n=%ld writers=%ld\n", (double)n / s, n, writers);
	return 0;
}
