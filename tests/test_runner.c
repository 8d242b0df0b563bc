/* test_runner: the local runner directly: a worker's output reaches its log
 * and its exit status the scheduler's collect, a start that cannot happen (no
 * such cwd) says why and leaves nothing behind, in a cgroup a kill reaches a
 * child that left the process group and the CPU time is counted; log files
 * and cgroups are made ahead (a file made at a start is never truncated
 * after), and an end removes what was made ahead and not taken. Live
 * restore: a worker outlives its runner (a daemon's crash) and the next one
 * adopts it, stdin and exit status included; an exit while no runner was
 * there is read back; a worker nobody claims is killed; a killed supervisor
 * makes its workers lost; the supervisor goes once nothing is left. */
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

#include "buf.h"
#include "runner.h"
#include "supervisor.h"

static char dir[64];
extern char **environ;

static int dir_setup(void **state)
{
	strcpy(dir, "/tmp/orchfs-runner-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

/* A test that failed half-way may have left a supervisor and its workers:
 * they go, then the directory. */
static int dir_teardown(void **state)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "for p in $(pgrep -f -- '%s %s/run[0-9]$'); do pkill -KILL -P $p; kill -KILL $p; done;"
		 " rm -rf %s", SUPERVISOR_ARG, dir, dir);
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

/* Is the supervisor of this test's runners there, as ps shows it? */
static bool supervisor_running(void)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "pgrep -f -- '%s %s/run[0-9]$' >/dev/null", SUPERVISOR_ARG, dir);
	return system(cmd) == 0;
}

static void supervisor_kill(void)
{
	char cmd[256];
	snprintf(cmd, sizeof cmd, "pkill -KILL -f -- '%s %s/run[0-9]$'", SUPERVISOR_ARG, dir);
	assert_int_equal(system(cmd), 0);
}

/* Each isolation has a state of its own (its ids, its record of exits). */
static struct runner *create(enum runner_isolation want, int first_id, struct orch_err *err)
{
	char run[128];
	snprintf(run, sizeof run, "%s/run%d", dir, (int)want);
	mkdir(run, 0700);
	struct runner *r = NULL;
	/* the cgroup is named after the directory: runs in parallel do not meet */
	if (runner_local_create(want, dir + 5, run, dir, "/proc/self/exe", first_id, &r, err))
		return NULL;
	return r;
}

/* waits (bounded) for id's end, as the scheduler does: poll, then collect */
static struct runner_end wait_end(struct runner *r, int id)
{
	for (int i = 0; i < 100; i++) {
		struct pollfd pfd = {.fd = r->event_fd, .events = POLLIN};
		poll(&pfd, 1, 100);
		struct runner_end *ends;
		size_t n = runner_collect(r, &ends);
		for (size_t k = 0; k < n; k++)
			if (ends[k].id == id) {
				struct runner_end e = ends[k];
				free(ends);
				return e;
			}
		free(ends);
	}
	fail_msg("worker %d never ended", id);
	return (struct runner_end){0};
}

static struct runner_job *start(struct runner *r, int id, const char *command)
{
	struct orch_err err = {0};
	struct runner_job *job = NULL;
	struct runner_spec spec = {id, command, dir, environ, log_path(id)};
	assert_int_equal(runner_start(r, &spec, &job, &err), 0);
	assert_non_null(job);
	assert_true(runner_job_pid(job) > 0);
	return job;
}

static void run_both(void (*fn)(struct runner *r, bool cgroup))
{
	for (int want = ISOLATION_CGROUP; want <= ISOLATION_PGROUP; want++) {
		struct orch_err err = {0};
		struct runner *r = create((enum runner_isolation)want, 1, &err);
		if (!r) {
			/* a machine without a writable cgroup v2: only process groups */
			assert_int_equal(want, ISOLATION_CGROUP);
			assert_non_null(strstr(err.message, "--isolation cgroup"));
			continue;
		}
		assert_string_equal(runner_isolation(r), want == ISOLATION_CGROUP ? "cgroup"
										 : "process-group");
		fn(r, want == ISOLATION_CGROUP);
		char base[4200] = "";
		if (runner_cgroup_path(r, 0, base, sizeof base))
			*strrchr(base, '/') = '\0';
		runner_destroy(r, false);
		/* the workers' cgroups and orchfs's own are gone with it */
		if (base[0])
			assert_int_equal(access(base, F_OK), -1);
	}
}

static void output_and_status(struct runner *r, bool cgroup)
{
	struct runner_job *job = start(r, 1, "echo out; echo err >&2; read line; echo \"got $line\"; pwd; exit 7");
	assert_int_equal(r->ops->write_stdin(r, job, "hello\n", 6), 6);
	struct runner_end e = wait_end(r, 1);
	assert_false(e.lost);
	assert_true(WIFEXITED(e.wstatus));
	assert_int_equal(WEXITSTATUS(e.wstatus), 7);
	char want[160];
	snprintf(want, sizeof want, "out\nerr\ngot hello\n%s\n", dir);
	assert_string_equal(slurp(1), want);
	struct runner_usage used;
	runner_release(r, job, &used);
	assert_true(cgroup ? used.cpu_us >= 0 : used.cpu_us == -1);
	/* a peak only where the memory controller is ours to enable */
	char controllers[4200], text[256] = "";
	if (runner_cgroup_path(r, 0, controllers, sizeof controllers)) {
		strcpy(strrchr(controllers, '/'), "/cgroup.subtree_control");
		FILE *f = fopen(controllers, "r");
		if (f && !fgets(text, sizeof text, f))
			text[0] = '\0';
		if (f)
			fclose(f);
	}
	assert_true(strstr(text, "memory") ? used.memory_peak > 0 : used.memory_peak == -1);
}

static void test_output_and_status(void **state)
{
	run_both(output_and_status);
}

static void bad_cwd(struct runner *r, bool cgroup)
{
	struct runner_job *job = (struct runner_job *)r;   /* not touched on failure */
	struct orch_err err = {0};
	struct runner_spec spec = {2, "true", "/nonexistent-orchfs-dir", environ, log_path(2)};
	assert_int_equal(runner_start(r, &spec, &job, &err), -ENOENT);
	assert_null(job);
	assert_non_null(strstr(err.message, "chdir"));
	char path[4200];
	/* its cgroup goes with it */
	if (runner_cgroup_path(r, 2, path, sizeof path))
		for (int i = 0; i < 500 && access(path, F_OK) == 0; i++)
			usleep(2000);
	if (runner_cgroup_path(r, 2, path, sizeof path))
		assert_int_equal(access(path, F_OK), -1);
	/* and a worker that does start after it is fine */
	job = start(r, 3, "exit 3");
	struct runner_end e = wait_end(r, 3);
	assert_true(WIFEXITED(e.wstatus) && WEXITSTATUS(e.wstatus) == 3);
	runner_release(r, job, NULL);
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

/* (up to 10 s: a loaded machine running the sanitizers is slow to reap) */
static bool dies(pid_t pid)
{
	for (int i = 0; alive(pid) && i < 5000; i++)
		usleep(2000);
	return !alive(pid);
}

/* A child that leaves the worker's process group: a kill reaches it only in
 * a cgroup. */
static void escapee(struct runner *r, bool cgroup)
{
	/* the pid is told from inside, once setsid has been */
	struct runner_job *job = start(r, 3, "setsid sh -c 'echo $$ >&2; exec sleep 300' & exec sleep 300");
	pid_t child = 0;
	for (int i = 0; i < 500 && !(child = (pid_t)atoi(slurp(3))); i++)
		usleep(2000);
	assert_true(child > 0);
	assert_int_equal(runner_freeze(r, job, true), 0);
	assert_int_equal(runner_freeze(r, job, false), 0);
	assert_int_equal(runner_signal(r, job, SIGKILL), 0);
	struct runner_end e = wait_end(r, 3);
	assert_true(WIFSIGNALED(e.wstatus) && WTERMSIG(e.wstatus) == SIGKILL);
	runner_release(r, job, NULL);
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

/* One never ended (a daemon stopping with it running, without live
 * restore): the end kills it, removes its cgroup, and the supervisor goes. */
static void test_unended(void **state)
{
	for (int want = ISOLATION_CGROUP; want <= ISOLATION_PGROUP; want++) {
		struct orch_err err = {0};
		struct runner *r = create((enum runner_isolation)want, 1, &err);
		if (!r)
			continue;
		struct runner_job *job = start(r, 4, "exec sleep 300");
		pid_t pid = runner_job_pid(job);
		r->ops->forget(r, job);
		runner_destroy(r, false);
		assert_true(dies(pid));
		for (int i = 0; supervisor_running() && i < 500; i++)
			usleep(2000);
		assert_false(supervisor_running());
	}
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
	struct runner_job *job = start(r, 1, "echo one");
	wait_end(r, 1);
	runner_release(r, job, NULL);
	assert_int_equal(size_of(1), 4);
	/* far ahead of the thread: made at the start, and the thread, which
	 * goes on from there, never truncates it */
	job = start(r, 1000, "echo thousand");
	wait_end(r, 1000);
	runner_release(r, job, NULL);
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
	struct orch_err err = {0};
	char run[128];
	snprintf(run, sizeof run, "%s/run", dir);
	mkdir(run, 0700);
	struct runner *r;
	assert_int_equal(runner_local_create(ISOLATION_AUTO, "no/such", run, dir, "/proc/self/exe",
					     1, &r, &err), 0);
	assert_string_equal(runner_isolation(r), "process-group");
	struct runner_job *job = start(r, 1, "exit 4");
	struct runner_end e = wait_end(r, 1);
	assert_true(WIFEXITED(e.wstatus) && WEXITSTATUS(e.wstatus) == 4);
	struct runner_usage used;
	runner_release(r, job, &used);
	assert_int_equal(used.cpu_us, -1);
	runner_destroy(r, false);
	assert_int_equal(runner_local_create(ISOLATION_CGROUP, "no/such", run, dir, "/proc/self/exe",
					     1, &r, &err), -EOPNOTSUPP);
	assert_non_null(strstr(err.message, "--isolation cgroup: "));
}

/* A daemon's crash and the next daemon, for each isolation. */
static void restore(struct runner *r, bool cgroup)
{
	/* 1 waits for a line on stdin; 2 ends while no runner is there; 3 is
	 * one the next daemon's store does not know */
	struct runner_job *one = start(r, 1, "read line; echo \"got $line\"; exit 5");
	struct runner_job *two = start(r, 2, "exec sleep 0.2");
	struct runner_job *three = start(r, 3, "exec sleep 300");
	pid_t pid1 = runner_job_pid(one), pid3 = runner_job_pid(three);
	r->ops->forget(r, one);
	r->ops->forget(r, two);
	r->ops->forget(r, three);
	runner_destroy(r, true);   /* as a crash leaves them */
	usleep(400 * 1000);
	assert_true(alive(pid1));

	struct orch_err err = {0};
	/* a store that lost the record of 3 would give 3 again: the runner
	 * knows better, and makes ahead from 4 on */
	r = create(cgroup ? ISOLATION_CGROUP : ISOLATION_PGROUP, 3, &err);
	assert_non_null(r);
	assert_int_equal(runner_local_last_id(r), 3);
	int wstatus = -1;
	assert_int_equal(r->ops->adopt(r, 1, NULL, &one, &wstatus), RUNNER_RUNNING);
	assert_int_equal(runner_job_pid(one), pid1);
	assert_int_equal(r->ops->adopt(r, 2, NULL, &two, &wstatus), RUNNER_ENDED);
	assert_true(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
	assert_int_equal(r->ops->adopt(r, 9, NULL, &two, &wstatus), RUNNER_GONE);
	r->ops->adopt_end(r);
	assert_true(dies(pid3));
	/* its stdin is still the same pipe: the line reaches it */
	assert_int_equal(r->ops->write_stdin(r, one, "again\n", 6), 6);
	struct runner_end e = wait_end(r, 1);
	assert_true(WIFEXITED(e.wstatus) && WEXITSTATUS(e.wstatus) == 5);
	assert_string_equal(slurp(1), "got again\n");
	runner_release(r, one, NULL);
	/* the supervisor is killed: what it ran can no longer be followed */
	struct runner_job *four = start(r, 4, "exec sleep 300");
	pid_t pid4 = runner_job_pid(four);
	supervisor_kill();
	e = wait_end(r, 4);
	assert_true(e.lost);
	runner_release(r, four, NULL);   /* its cgroup, and in it the orphan, goes */
	if (!cgroup)
		kill(pid4, SIGKILL);
	assert_true(dies(pid4));
	/* and the next start has a supervisor again */
	struct runner_job *five = start(r, 5, "exit 2");
	e = wait_end(r, 5);
	assert_true(WIFEXITED(e.wstatus) && WEXITSTATUS(e.wstatus) == 2);
	runner_release(r, five, NULL);
	runner_destroy(r, false);
}

static void test_live_restore(void **state)
{
	for (int want = ISOLATION_CGROUP; want <= ISOLATION_PGROUP; want++) {
		struct orch_err err = {0};
		struct runner *r = create((enum runner_isolation)want, 1, &err);
		if (!r)
			continue;
		restore(r, want == ISOLATION_CGROUP);
		for (int i = 0; supervisor_running() && i < 500; i++)
			usleep(2000);
		assert_false(supervisor_running());
		/* with no supervisor left, the record of exits still knows 5 */
		r = create((enum runner_isolation)want, 1, &err);
		assert_non_null(r);
		assert_int_equal(runner_local_last_id(r), 5);
		runner_destroy(r, false);
	}
}

int main(int argc, char **argv)
{
	/* a start runs this binary again as the supervisor */
	if (argc == 3 && strcmp(argv[1], SUPERVISOR_ARG) == 0)
		return supervisor_main(argc, argv);
	signal(SIGCHLD, SIG_DFL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_output_and_status, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_bad_cwd, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_escapee, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_unended, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_made_ahead, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_no_cgroup, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_live_restore, dir_setup, dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
