/*
 * readloop: the timing loop of tests/bench/bench_read.sh.
 *
 * `readloop PATH N` does N rounds of open, read 4 KiB at a time until EOF,
 * close, timing each round with CLOCK_MONOTONIC, and prints
 *   median_us=X p99_us=Y n=N
 * It exits non-zero if an open, read or close fails or a round reads 0 bytes.
 * `readloop -s PATH N` times N stats instead. The file is opened (or
 * looked at) by its name in its directory, held open once before the loop
 * (openat, fstatat): the walk to the directory, the kernel's alone and the
 * same for any file system, is not what is compared, and a file three
 * directories down is timed as one at the top.
 *
 *   cc -std=gnu11 -Wall -Wextra readloop.c -o readloop
 *   ./readloop /etc/hostname 10000
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READLOOP_MAX_N 10000000L

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* One open+read+close of name in dir; returns bytes read, or -1 with a
 * message printed. */
static long one_round(int dir, const char *path)
{
	char buf[4096];
	long total = 0;
	ssize_t n;
	int fd = openat(dir, path, O_RDONLY);

	if (fd < 0) {
		fprintf(stderr, "readloop: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((n = read(fd, buf, sizeof buf)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "readloop: read %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		total += n;
	}
	if (close(fd) != 0) {
		fprintf(stderr, "readloop: close %s: %s\n", path, strerror(errno));
		return -1;
	}
	return total;
}

/* One stat of name in dir; returns 1, or -1 with a message printed. */
static long one_stat(int dir, const char *path)
{
	struct stat st;

	if (fstatat(dir, path, &st, 0) != 0) {
		fprintf(stderr, "readloop: stat %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	uint64_t *t;
	char *end;
	long n;
	long (*round_fn)(int, const char *) = one_round;

	if (argc == 4 && strcmp(argv[1], "-s") == 0) {
		round_fn = one_stat;
		argv++;
		argc--;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: %s [-s] PATH N\n", argv[0]);
		return 2;
	}
	errno = 0;
	n = strtol(argv[2], &end, 10);
	if (errno || *end || end == argv[2] || n < 1 || n > READLOOP_MAX_N) {
		fprintf(stderr, "readloop: N must be 1..%ld\n", READLOOP_MAX_N);
		return 2;
	}
	char *slash = strrchr(argv[1], '/');
	const char *name = slash ? slash + 1 : argv[1];
	if (slash)
		*slash = '\0';
	int dir = open(slash ? (argv[1][0] ? argv[1] : "/") : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0) {
		fprintf(stderr, "readloop: the directory of %s: %s\n", name, strerror(errno));
		return 1;
	}
	t = malloc((size_t)n * sizeof *t);
	if (!t) {
		fprintf(stderr, "readloop: out of memory\n");
		return 1;
	}
	for (long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();
		long got = round_fn(dir, name);
		uint64_t t1 = now_ns();

		if (got < 0) {
			free(t);
			return 1;
		}
		if (got == 0) {
			fprintf(stderr, "readloop: %s: round %ld read 0 bytes\n", argv[1], i);
			free(t);
			return 1;
		}
		t[i] = t1 - t0;
	}
	qsort(t, (size_t)n, sizeof *t, cmp_u64);
	/* Nearest-rank percentiles: median = lower middle, p99 = ceil(0.99 n)-th. */
	uint64_t med = t[(n - 1) / 2];
	uint64_t p99 = t[(n * 99 + 99) / 100 - 1];
	printf("median_us=%.2f p99_us=%.2f n=%ld\n", (double)med / 1000.0,
	       (double)p99 / 1000.0, n);
	free(t);
	return 0;
}
