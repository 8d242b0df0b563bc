/* spawnloop: the anchor of bench_spawn.sh: N processes of `sh -c true`, at
 * most K at once, started and reaped as fast as they go. Prints
 * `spawns_per_s=X n=N in_flight=K`.
 *   spawnloop 1000 8                                  # posix_spawn, wait
 *   spawnloop 1000 8 --logs /tmp/l --cgroup /sys/fs/cgroup/x
 * With those, each process gets what orchfs gives a worker at the least: a
 * log file of its own in the log directory (its stdout and stderr), and,
 * with a cgroup directory (a writable cgroup v2, made if missing and removed
 * at the end), a cgroup made for it there (with the memory controller, when
 * the directory can give it), joined before exec and removed once it is
 * reaped. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char sh[] = "sh", c[] = "-c", cmd[] = "true";
static char *args[] = {sh, c, cmd, NULL};

/* The child joins its cgroup by writing to cgroup.procs between fork and
 * exec, as orchfs's supervisor does; vfork: the child only writes and execs. */
static pid_t spawn_into(int logs, int dir, long n)
{
	char name[32];
	snprintf(name, sizeof name, "%ld.log", n);
	int log = openat(logs, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644), procs = -1;
	if (log < 0)
		return -1;
	if (dir >= 0) {
		snprintf(name, sizeof name, "s%ld", n);
		if (mkdirat(dir, name, 0755) < 0)
			return -1;
		snprintf(name, sizeof name, "s%ld/cgroup.procs", n);
		if ((procs = openat(dir, name, O_WRONLY | O_CLOEXEC)) < 0)
			return -1;
	}
	pid_t pid = vfork();
	if (pid == 0) {
		if ((procs < 0 || write(procs, "0", 1) == 1) && dup2(log, 1) == 1 && dup2(log, 2) == 2)
			execve("/bin/sh", args, environ);
		_exit(127);
	}
	if (procs >= 0)
		close(procs);
	close(log);
	return pid;
}

/* A reaped process's cgroup can stay busy for a moment. */
static int remove_cgroup(int dir, long n)
{
	char name[32];
	snprintf(name, sizeof name, "s%ld", n);
	for (int i = 0; i < 1000; i++) {
		if (unlinkat(dir, name, AT_REMOVEDIR) == 0)
			return 0;
		if (errno != EBUSY)
			break;
		sched_yield();
	}
	perror(name);
	return -1;
}

int main(int argc, char **argv)
{
	const char *logs_path = NULL, *dir_path = NULL;
	for (int i = 3; i + 1 < argc; i += 2)
		if (!strcmp(argv[i], "--logs"))
			logs_path = argv[i + 1];
		else if (!strcmp(argv[i], "--cgroup"))
			dir_path = argv[i + 1];
	if (argc < 3 || argc % 2 == 0 || (argc > 3 && !logs_path) || (argc == 7 && !dir_path)) {
		fprintf(stderr, "usage: spawnloop N K [--logs DIR [--cgroup DIR]]\n");
		return 2;
	}
	long n = atol(argv[1]), k = atol(argv[2]);
	if (n < 1 || k < 1 || k > 4096) {
		fprintf(stderr, "spawnloop: N >= 1, 1 <= K <= 4096\n");
		return 2;
	}
	int logs = -1, dir = -1;
	if (logs_path && (logs = open(logs_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror(logs_path);
		return 1;
	}
	if (dir_path) {
		if ((mkdir(dir_path, 0755) < 0 && errno != EEXIST) ||
		    (dir = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			perror(dir_path);
			return 1;
		}
		int fd = openat(dir, "cgroup.subtree_control", O_WRONLY | O_CLOEXEC);
		if (fd >= 0) {
			(void)!write(fd, "+memory", 7);
			close(fd);
		}
	}
	pid_t pids[4096];
	long ns[4096];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long started = 0, running = 0;
	int rc = 0;
	while (started < n || running > 0) {
		while (started < n && running < k) {
			pid_t pid;
			if (logs >= 0) {
				pid = spawn_into(logs, dir, started);
				if (pid < 0) {
					perror("a log file or a cgroup");
					return 1;
				}
			} else if (posix_spawn(&pid, "/bin/sh", NULL, NULL, args, environ) != 0) {
				perror("posix_spawn");
				return 1;
			}
			pids[running] = pid;
			ns[running++] = started++;
		}
		int status;
		pid_t pid = wait(&status);
		if (pid < 0) {
			perror("wait");
			return 1;
		}
		for (long i = 0; i < running; i++)
			if (pids[i] == pid) {
				if (dir >= 0 && remove_cgroup(dir, ns[i]))
					rc = 1;
				pids[i] = pids[--running];
				ns[i] = ns[running];
				break;
			}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (dir >= 0 && rmdir(dir_path) < 0) {
		perror(dir_path);
		rc = 1;
	}
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("spawns_per_s=%.0f n=%ld in_flight=%ld\n", (double)n / s, n, k);
	return rc;
}
