/*
 * scale_probe: the timing loops of tests/bench/bench_scale.sh, in C so that
 * what is timed is the daemon and not a shell. Each mode prints one line of
 * key=value pairs and exits non-zero if a call on the mount fails.
 *
 *   scale_probe ops PID PATH N MAX_S VALUE...
 *       N rounds (fewer if they take more than MAX_S seconds) of open, one
 *       write of the next VALUE (cycling), close, as `echo VALUE > PATH`
 *       does; prints the CPU time (utime+stime of
 *       /proc/PID/stat) the daemon spent per write, counted from just before
 *       the first write until its CPU goes quiet again (so the work a write
 *       leaves to other threads is counted too), and its idle CPU rate,
 *       sampled first, once the daemon is at rest:
 *       cpu_ms_per_op= net_ms_per_op= wall_ms_per_op= idle_cpu_pct= settle_s= n= of=
 *       (net takes off what the daemon would have burnt idle meanwhile;
 *       settle_s is how long it took to come to rest)
 *   scale_probe inotify STATUS PAUSE RESUME N
 *       an inotify watch on STATUS, then N writes alternating PAUSE and
 *       RESUME, each timed from just before write() to the first event;
 *       prints p50_ms= p99_ms= max_ms= late= lost= n=
 *       (late: not announced within 1 s; lost: not within LOST_MS (2 s) either,
 *       and counted at LOST_MS)
 *   scale_probe stat N PATH_A PATH_B
 *       N stat() calls of each, alternating; prints
 *       a_median_us= a_p99_us= b_median_us= b_p99_us= n=
 *   scale_probe read N PATH
 *       N rounds of open, read to EOF, close, as `cat PATH > /dev/null`
 *       does; prints median_ms= min_ms= max_ms= bytes=
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LATE_MS 1000
/* How long to wait for an announcement: a change the notifier never
 * announces (older versions compared renders and missed quick reversals)
 * counts as this, so waiting longer would only cost time. */
#define LOST_MS 2000
/* The gap between two changes: long enough that one change's trailing
 * events (a pass announces every file it touched) stay out of the next
 * measurement. */
#define INOTIFY_GAP_MS 100

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
	struct timespec ts = {(time_t)(ms / 1e3), (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6)};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), sorted in place; nearest rank. */
static double quantile(double *v, size_t n, double q)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	size_t i = (size_t)(q * (double)n);
	return v[i < n ? i : n - 1];
}

static long parse_n(const char *s)
{
	char *end;
	long n = strtol(s, &end, 10);
	if (*end || n < 1 || n > 100000000L) {
		fprintf(stderr, "scale_probe: not a count: %s\n", s);
		exit(2);
	}
	return n;
}

/* utime+stime of every thread of PID, in ms; -1 once it is gone. */
static double cpu_ms(long pid)
{
	char path[64], line[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = '\0';
	/* comm may hold spaces and parentheses: parse after the last ')' */
	char *p = strrchr(line, ')');
	unsigned long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) * 1e3 / (double)sysconf(_SC_CLK_TCK);
}

static int write_once(const char *path, const char *value)
{
	size_t len = strlen(value);
	int fd = open(path, O_WRONLY);
	if (fd < 0) {
		fprintf(stderr, "scale_probe: open %s: %s\n", path, strerror(errno));
		return -1;
	}
	ssize_t w = write(fd, value, len);
	int saved = errno;
	close(fd);
	if (w != (ssize_t)len) {
		fprintf(stderr, "scale_probe: write '%s' to %s: %s\n", value, path,
			w < 0 ? strerror(saved) : "short write");
		return -1;
	}
	return 0;
}

static int mode_ops(long pid, const char *path, long want, long max_s, char **values, int nvalues)
{
	/* At rest first: work a daemon still has from before (a notifier pass
	 * over a big state takes seconds) must not be counted against these
	 * writes. The clock ticks at CLK_TCK (100 Hz), so the idle rate needs
	 * windows of a second: until one costs at most 10% of a core, or no
	 * less than the one before (a big daemon burns some CPU at rest), 30 s
	 * at most; the last window is the idle rate, settle_s tells how long. */
	double idle_rate = 1e9;   /* ms of CPU per ms */
	int settle;
	for (settle = 0; settle < 30; settle++) {
		double w0 = now_ms(), c0 = cpu_ms(pid);
		sleep_ms(1000);
		double w1 = now_ms(), c1 = cpu_ms(pid);
		if (c0 < 0 || c1 < 0) {
			fprintf(stderr, "scale_probe: no process %ld\n", pid);
			return 1;
		}
		double prev_rate = idle_rate;
		idle_rate = (c1 - c0) / (w1 - w0);
		if (idle_rate <= 0.1 || idle_rate >= prev_rate - 0.02)
			break;
	}

	double t0 = now_ms(), start = cpu_ms(pid);
	long n = 0;
	while (n < want && (now_ms() - t0 < (double)max_s * 1e3 || n < 1))
		if (write_once(path, values[n++ % nvalues]))
			return 1;
	double wrote = now_ms();
	/* Quiet again: a 200 ms window that costs no more than idle (and a tick of
	 * rounding); 10 s at most, for a daemon that never goes quiet. */
	double prev = cpu_ms(pid), t1 = wrote;
	for (int i = 0; i < 50; i++) {
		sleep_ms(200);
		double c = cpu_ms(pid);
		t1 = now_ms();
		if (c < 0) {
			fprintf(stderr, "scale_probe: process %ld ended\n", pid);
			return 1;
		}
		double before = prev;
		prev = c;
		if (c - before <= idle_rate * 200 + 1e3 / (double)sysconf(_SC_CLK_TCK))
			break;
	}
	double used = prev - start;
	double net = used - idle_rate * (t1 - t0);
	printf("cpu_ms_per_op=%.4f net_ms_per_op=%.4f wall_ms_per_op=%.4f idle_cpu_pct=%.1f "
	       "settle_s=%d n=%ld of=%ld\n",
	       used / (double)n, (net > 0 ? net : 0) / (double)n, (wrote - t0) / (double)n,
	       idle_rate * 100, settle, n, want);
	return 0;
}

static void drain(int fd)
{
	char buf[4096];
	while (read(fd, buf, sizeof buf) > 0)
		;
}

/* ms until the next event on fd, or -1 if none within limit_ms. */
static double wait_event(int fd, double t0, double limit_ms)
{
	for (;;) {
		double left = t0 + limit_ms - now_ms();
		if (left <= 0)
			return -1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, (int)left + 1);
		double t = now_ms();
		if (r > 0)
			return t - t0;
		if (r < 0 && errno != EINTR)
			return -1;
	}
}

static int mode_inotify(const char *status, const char *pause, const char *resume, long n)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, status, IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE) < 0) {
		fprintf(stderr, "scale_probe: inotify on %s: %s\n", status, strerror(errno));
		return 1;
	}
	double *lat = calloc((size_t)n, sizeof *lat);
	long late = 0, lost = 0;
	for (long i = 0; i < n; i++) {
		drain(fd);
		const char *path = i % 2 ? resume : pause;
		int w = open(path, O_WRONLY);
		if (w < 0) {
			fprintf(stderr, "scale_probe: open %s: %s\n", path, strerror(errno));
			return 1;
		}
		double t0 = now_ms();
		if (write(w, "x\n", 2) != 2) {
			fprintf(stderr, "scale_probe: write %s: %s\n", path, strerror(errno));
			return 1;
		}
		close(w);
		double ms = wait_event(fd, t0, LOST_MS);
		if (ms < 0) {
			lost++;
			ms = LOST_MS;
		}
		if (ms > LATE_MS)
			late++;
		lat[i] = ms;
		sleep_ms(INOTIFY_GAP_MS);
	}
	/* leave the pipeline running, as it was found */
	if (n % 2 && write_once(resume, "x\n"))
		return 1;
	double p50 = quantile(lat, (size_t)n, 0.5), p99 = quantile(lat, (size_t)n, 0.99);
	printf("p50_ms=%.3f p99_ms=%.3f max_ms=%.3f late=%ld lost=%ld n=%ld\n", p50, p99,
	       lat[n - 1], late, lost, n);
	free(lat);
	close(fd);
	return 0;
}

static int mode_stat(long n, const char *a, const char *b)
{
	double *va = calloc((size_t)n, sizeof *va), *vb = calloc((size_t)n, sizeof *vb);
	struct stat st;
	for (long i = 0; i < n; i++) {
		double t0 = now_ms();
		if (stat(a, &st)) {
			fprintf(stderr, "scale_probe: stat %s: %s\n", a, strerror(errno));
			return 1;
		}
		double t1 = now_ms();
		if (stat(b, &st)) {
			fprintf(stderr, "scale_probe: stat %s: %s\n", b, strerror(errno));
			return 1;
		}
		double t2 = now_ms();
		va[i] = (t1 - t0) * 1e3;
		vb[i] = (t2 - t1) * 1e3;
	}
	double am = quantile(va, (size_t)n, 0.5), a99 = quantile(va, (size_t)n, 0.99);
	double bm = quantile(vb, (size_t)n, 0.5), b99 = quantile(vb, (size_t)n, 0.99);
	printf("a_median_us=%.2f a_p99_us=%.2f b_median_us=%.2f b_p99_us=%.2f n=%ld\n", am, a99, bm,
	       b99, n);
	free(va);
	free(vb);
	return 0;
}

static int mode_read(long n, const char *path)
{
	static char buf[1 << 16];
	double *v = calloc((size_t)n, sizeof *v);
	long long bytes = 0;
	for (long i = 0; i < n; i++) {
		double t0 = now_ms();
		int fd = open(path, O_RDONLY);
		if (fd < 0) {
			fprintf(stderr, "scale_probe: open %s: %s\n", path, strerror(errno));
			return 1;
		}
		ssize_t r;
		bytes = 0;
		while ((r = read(fd, buf, sizeof buf)) > 0)
			bytes += r;
		if (r < 0) {
			fprintf(stderr, "scale_probe: read %s: %s\n", path, strerror(errno));
			return 1;
		}
		close(fd);
		v[i] = now_ms() - t0;
	}
	double med = quantile(v, (size_t)n, 0.5);
	printf("median_ms=%.3f min_ms=%.3f max_ms=%.3f bytes=%lld\n", med, v[0], v[n - 1], bytes);
	free(v);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 7 && !strcmp(argv[1], "ops"))
		return mode_ops(parse_n(argv[2]), argv[3], parse_n(argv[4]), parse_n(argv[5]), argv + 6,
				argc - 6);
	if (argc == 6 && !strcmp(argv[1], "inotify"))
		return mode_inotify(argv[2], argv[3], argv[4], parse_n(argv[5]));
	if (argc == 5 && !strcmp(argv[1], "stat"))
		return mode_stat(parse_n(argv[2]), argv[3], argv[4]);
	if (argc == 4 && !strcmp(argv[1], "read"))
		return mode_read(parse_n(argv[2]), argv[3]);
	fprintf(stderr, "usage: scale_probe ops PID PATH N MAX_S VALUE...\n"
			"       scale_probe inotify STATUS PAUSE RESUME N\n"
			"       scale_probe stat N PATH_A PATH_B\n"
			"       scale_probe read N PATH\n");
	return 2;
}
