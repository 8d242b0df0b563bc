/* writeloop: control writes per second on a file of the mount.
 *   writeloop MOUNT/mma/pipeline/max_workers 2000
 * Each round is open, one write of a number, close: one command, applied and
 * committed before write() returns. Prints `writes_per_s=X n=N`. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: writeloop PATH N\n");
		return 2;
	}
	long n = atol(argv[2]);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		char buf[16];
		int len = snprintf(buf, sizeof buf, "%ld\n", 1 + i % 8);
		int fd = open(argv[1], O_WRONLY);
		if (fd < 0 || write(fd, buf, (size_t)len) != len) {
			perror(argv[1]);
			return 1;
		}
		close(fd);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("writes_per_s=%.0f n=%ld\n", (double)n / s, n);
	return 0;
}
