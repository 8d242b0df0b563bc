/* test_runner: the local runner directly: a worker's output reaches its log
 * and its exit status its reaper, a start that cannot happen (no such cwd)
 * says why and leaves nothing behind, in a cgroup a kill reaches a child that
 * left the process group and the CPU time is counted; log files and cgroups
 * are made ahead (a file made at a start is never truncated after), and an
 * end removes what was made ahead and not taken. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runner.h"

static char dir[64];
extern char **environ;

static int dir_setup(void **state)
{
	strcpy(dir, "/tmp/orchfs-runner-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int dir_teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) ? -1 : 0;
}

static const char *log_path(int id)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%d.log", dir, id);
	return path;
}

static off_t size_of(int id)
{
	struct stat st;
	return stat(log_path(id), &st) == 0 ? st.st_size : -1;
}

static char *slurp(int id)
{
	static char text[256];
	int fd = open(log_path(id), O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
	if (fd >= 0)
		close(fd);
	text[n > 0 ? n : 0] = '\0';
	return text;
}

/* waits on the pidfd, then reaps */
static int wait_exit(struct runner_proc *p)
{
	struct pollfd pfd = {.fd = p->pidfd, .events = POLLIN};
	assert_int_equal(poll(&pfd, 1, 10000), 1);
	int wstatus = 0;
	assert_int_equal(runner_reap(p, &wstatus), 1);
	return wstatus;
}

static void start(struct runner *r, int id, const char *command, struct runner_proc *p)
{
	struct orch_err err = {0};
	assert_int_equal(runner_start(r, id, command, dir, environ, log_path(id), p, &err), 0);
}

static void run_both(void (*fn)(struct runner *r, bool cgroup))
{
	for (int want = ISOLATION_CGROUP; want <= ISOLATION_PGROUP; want++) {
		struct runner r;
		struct orch_err err = {0};
		if (runner_init(&r, (enum runner_isolation)want, "test", dir, 1, &err)) {
			/* a machine without a writable cgroup v2: only process groups */
			assert_int_equal(want, ISOLATION_CGROUP);
			assert_non_null(strstr(err.message, "--isolation cgroup"));
			continue;
		}
		assert_string_equal(runner_isolation(&r), want == ISOLATION_CGROUP ? "cgroup"
										  : "process-group");
		fn(&r, want == ISOLATION_CGROUP);
		char base[4200] = "";
		if (r.cgroup_path)
			snprintf(base, sizeof base, "%s", r.cgroup_path);
		runner_fini(&r);
		/* the workers' cgroups and orchfs's own are gone with it */
		if (base[0])
			assert_int_equal(access(base, F_OK), -1);
	}
}

static void output_and_status(struct runner *r, bool cgroup)
{
	struct runner_proc p;
	start(r, 1, "echo out; echo err >&2; read line; echo \"got $line\"; pwd; exit 7", &p);
	assert_int_equal(write(p.stdin_fd, "hello\n", 6), 6);
	int wstatus = wait_exit(&p);
	assert_true(WIFEXITED(wstatus));
	assert_int_equal(WEXITSTATUS(wstatus), 7);
	char want[160];
	snprintf(want, sizeof want, "out\nerr\ngot hello\n%s\n", dir);
	assert_string_equal(slurp(1), want);
	int64_t cpu = runner_end(r, &p);
	assert_true(cgroup ? cpu >= 0 : cpu == -1);
	assert_int_equal(p.pidfd, -1);
	assert_int_equal(p.stdin_fd, -1);
}

static void test_output_and_status(void **state)
{
	run_both(output_and_status);
}

static void bad_cwd(struct runner *r, bool cgroup)
{
	struct runner_proc p;
	struct orch_err err = {0};
	assert_int_equal(runner_start(r, 2, "true", "/nonexistent-orchfs-dir", environ, log_path(2),
				      &p, &err), -ENOENT);
	assert_non_null(strstr(err.message, "chdir"));
	assert_int_equal(p.pidfd, -1);
	char path[4200];
	/* its cgroup goes with it */
	if (runner_cgroup_path(r, 2, path, sizeof path))
		for (int i = 0; i < 500 && access(path, F_OK) == 0; i++)
			usleep(2000);
	if (runner_cgroup_path(r, 2, path, sizeof path))
		assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);   /* no child left unreaped */
}

static void test_bad_cwd(void **state)
{
	run_both(bad_cwd);
}

/* running: there, and not a zombie waiting for init to reap it */
static bool alive(pid_t pid)
{
	char path[64], text[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, text, sizeof text - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	text[n] = '\0';
	const char *paren = strrchr(text, ')');
	return paren && paren[1] == ' ' && paren[2] != 'Z';
}

/* A child that leaves the worker's process group: a kill reaches it only in
 * a cgroup. */
static void escapee(struct runner *r, bool cgroup)
{
	struct runner_proc p;
	/* the pid is told from inside, once setsid has been */
	start(r, 3, "setsid sh -c 'echo $$ >&2; exec sleep 300' & exec sleep 300", &p);
	pid_t child = 0;
	for (int i = 0; i < 500 && !(child = (pid_t)atoi(slurp(3))); i++)
		usleep(2000);
	assert_true(child > 0);
	assert_int_equal(runner_freeze(&p, true), 0);
	assert_int_equal(runner_freeze(&p, false), 0);
	assert_int_equal(runner_signal(&p, SIGKILL), 0);
	int wstatus = wait_exit(&p);
	assert_true(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL);
	runner_end(r, &p);
	for (int i = 0; alive(child) && i < 500; i++)
		usleep(2000);
	assert_int_equal(alive(child), !cgroup);
	if (!cgroup)
		kill(child, SIGKILL);
}

static void test_escapee(void **state)
{
	run_both(escapee);
}

/* One never reaped nor ended (a daemon stopping with it running): fini kills
 * it and removes its cgroup all the same. */
static void unended(struct runner *r, bool cgroup)
{
	struct runner_proc p;
	start(r, 4, "exec sleep 300", &p);
	if (!cgroup) {
		runner_signal(&p, SIGKILL);
		wait_exit(&p);
	}
	close(p.pidfd);
	close(p.stdin_fd);
	if (p.cgroup >= 0)
		close(p.cgroup);
}

static void test_unended(void **state)
{
	run_both(unended);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* waits (bounded) until the prep thread has made the log of id */
static bool made(int id)
{
	for (int i = 0; i < 500 && size_of(id) != 0; i++)
		usleep(2000);
	return size_of(id) == 0;
}

static void made_ahead(struct runner *r, bool cgroup)
{
	assert_true(made(1));
	assert_true(made(RUNNER_AHEAD));
	char path[4200];
	if (runner_cgroup_path(r, 1, path, sizeof path))
		assert_int_equal(access(path, F_OK), 0);
	struct runner_proc p;
	start(r, 1, "echo one", &p);
	wait_exit(&p);
	runner_end(r, &p);
	assert_int_equal(size_of(1), 4);
	/* far ahead of the thread: made at the start, and the thread, which
	 * goes on from there, never truncates it */
	start(r, 1000, "echo thousand", &p);
	wait_exit(&p);
	runner_end(r, &p);
	assert_true(made(1001));
	assert_int_equal(size_of(1000), 9);
}

static void test_made_ahead(void **state)
{
	/* left over from a store that was removed: made anew */
	int stale = open(log_path(1), O_WRONLY | O_CREAT, 0600);
	assert_int_equal(write(stale, "old output\n", 11), 11);
	close(stale);
	run_both(made_ahead);
	/* what was taken stays, what was made ahead went with the runner */
	assert_int_equal(size_of(1), 4);
	assert_int_equal(size_of(1000), 9);
	assert_int_equal(size_of(2), -1);
	assert_int_equal(size_of(1001), -1);
}

/* Where no cgroup can be made (here: a name that cannot be one), auto falls
 * back to process groups and still starts workers; cgroup asked for is an
 * error that says why. */
static void test_no_cgroup(void **state)
{
	struct runner r;
	struct orch_err err = {0};
	assert_int_equal(runner_init(&r, ISOLATION_AUTO, "no/such", dir, 1, &err), 0);
	assert_string_equal(runner_isolation(&r), "process-group");
	struct runner_proc p;
	start(&r, 1, "exit 4", &p);
	int wstatus = wait_exit(&p);
	assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 4);
	assert_int_equal(runner_end(&r, &p), -1);
	runner_fini(&r);
	assert_int_equal(runner_init(&r, ISOLATION_CGROUP, "no/such", dir, 1, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.message, "--isolation cgroup: "));
}

int main(void)
{
	signal(SIGCHLD, SIG_DFL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_output_and_status, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_bad_cwd, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_escapee, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_unended, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_made_ahead, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_no_cgroup, dir_setup, dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
