/* daemon_info: the pid file, daemon.json, and naming who holds a state
 * directory or a mount (daemon_info.h). */
#include "daemon_info.h"
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

/* path := dir/name.tmp written with text, then renamed over dir/name */
static int write_atomic(const char *dir, const char *name, const char *text, size_t len,
			struct orch_err *err)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_set(err, errno, "cannot write %s: %s", tmp, strerror(errno));
	int rc = 0;
	if (fchmod(fd, 0600) < 0)
		rc = -errno;
	for (size_t done = 0; !rc && done < len;) {
		ssize_t n = write(fd, text + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			rc = n < 0 ? -errno : -EIO;
		else
			done += (size_t)n;
	}
	if (close(fd) < 0 && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		return err_set(err, -rc, "cannot write %s: %s", path, strerror(-rc));
	}
	return 0;
}

char *daemon_default_state_dir(void)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	struct buf b = BUF_INIT;
	if (xdg && *xdg)
		buf_printf(&b, "%s/orchfs", xdg);
	else
		buf_printf(&b, "%s/.local/state/orchfs", home && *home ? home : "/tmp");
	return buf_steal(&b);
}

int daemon_pid_write(const char *state_dir, pid_t pid, struct orch_err *err)
{
	char text[32];
	int n = snprintf(text, sizeof text, "%d\n", (int)pid);
	return write_atomic(state_dir, "orchfs.pid", text, (size_t)n, err);
}

void daemon_info_render(const struct daemon_info *d, struct buf *out)
{
	char at[40];
	time_iso(d->started_ms, at, sizeof at);
	jw_lit(out, "{\"pid\":");
	jw_i64(out, d->pid);
	jw_lit(out, ",\"version\":");
	jw_str(out, ORCHFS_VERSION);
	jw_lit(out, ",\"mount\":");
	jw_str(out, d->mount);
	jw_lit(out, ",\"state_dir\":");
	jw_str(out, d->state_dir);
	jw_lit(out, ",\"http\":");
	jw_str_or_null(out, d->http);
	jw_lit(out, ",\"ws\":");
	jw_str_or_null(out, d->ws);
	jw_lit(out, ",\"token_file\":");
	jw_str_or_null(out, d->token_file);
	jw_lit(out, ",\"log\":");
	jw_str_or_null(out, d->log);
	jw_lit(out, ",\"started_at\":");
	jw_str(out, at);
	jw_lit(out, ",\"started_unix\":");
	jw_i64(out, d->started_ms / 1000);
	jw_lit(out, "}\n");
}

int daemon_info_write(const struct daemon_info *d, struct orch_err *err)
{
	struct buf b = BUF_INIT;
	daemon_info_render(d, &b);
	int rc = write_atomic(d->state_dir, "daemon.json", b.data, b.len, err);
	buf_free(&b);
	return rc;
}

static void remove_in(const char *state_dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", state_dir, name);
	unlink(path);
}

void daemon_info_remove(const char *state_dir)
{
	remove_in(state_dir, "daemon.json");
}

void daemon_pid_remove(const char *state_dir)
{
	remove_in(state_dir, "orchfs.pid");
}

/* /proc/PID/comm without its newline into out; false when gone */
static bool proc_comm(pid_t pid, char *out, size_t size)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	bool ok = fgets(out, (int)size, f) != NULL;
	fclose(f);
	if (ok)
		out[strcspn(out, "\n")] = '\0';
	return ok;
}

/* Not a zombie: a daemon killed while nobody reaps it keeps its pid and
 * its name until it is reaped. */
static bool proc_running(pid_t pid)
{
	char path[64], text[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	const char *paren = strrchr(text, ')');
	return paren && paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X';
}

int daemon_pid_alive(pid_t pid)
{
	char comm[32];
	return pid > 0 && proc_comm(pid, comm, sizeof comm) && !strcmp(comm, "orchfs") &&
	       proc_running(pid);
}

static char *read_small(const char *dir, const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char *text = xmalloc(8192);
	size_t n = fread(text, 1, 8191, f);
	fclose(f);
	text[n] = '\0';
	return text;
}

/* daemon.json's pid and mount (mount malloc'd, NULL when absent) */
static pid_t read_info(const char *state_dir, char **mount)
{
	*mount = NULL;
	char *text = read_small(state_dir, "daemon.json");
	cJSON *doc = text ? cJSON_Parse(text) : NULL;
	free(text);
	int64_t pid = 0;
	if (!doc || !json_int(cJSON_GetObjectItemCaseSensitive(doc, "pid"), 1, INT_MAX, &pid))
		pid = 0;
	const cJSON *m = doc ? cJSON_GetObjectItemCaseSensitive(doc, "mount") : NULL;
	if (cJSON_IsString(m))
		*mount = xstrdup(m->valuestring);
	cJSON_Delete(doc);
	return (pid_t)pid;
}

static pid_t read_pid_file(const char *state_dir)
{
	char *text = read_small(state_dir, "orchfs.pid");
	long pid = text ? strtol(text, NULL, 10) : 0;
	free(text);
	return pid > 0 && pid <= INT_MAX ? (pid_t)pid : 0;
}

/* Calls fn with the target of each of pid's descriptors until it returns
 * true; false when none did (or they cannot be looked into: another user's). */
static bool each_fd(long pid, bool (*fn)(void *arg, char *target, size_t len), void *arg)
{
	char fddir[64];
	snprintf(fddir, sizeof fddir, "/proc/%ld/fd", pid);
	DIR *fds = opendir(fddir);
	if (!fds)
		return false;
	bool done = false;
	struct dirent *f;
	while (!done && (f = readdir(fds))) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(dirfd(fds), f->d_name, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		done = fn(arg, target, (size_t)n);
	}
	closedir(fds);
	return done;
}

/* Calls fn for each process but this one until it returns true: its pid, or 0. */
static pid_t each_proc(bool (*fn)(void *arg, long pid), void *arg)
{
	DIR *proc = opendir("/proc");
	if (!proc)
		return 0;
	pid_t found = 0;
	struct dirent *e;
	while (!found && (e = readdir(proc))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (!*end && pid > 0 && pid != getpid() && fn(arg, pid))
			found = (pid_t)pid;
	}
	closedir(proc);
	return found;
}

static bool is_path(void *arg, char *target, size_t len)
{
	return !strcmp(target, arg);
}

static bool holds_path(void *arg, long pid)
{
	return each_fd(pid, is_path, arg);
}

/* The first process (not this one) with a descriptor on path; 0: none seen. */
static pid_t proc_holding(const char *path)
{
	return each_proc(holds_path, (void *)path);
}

void daemon_describe_holder(const char *state_dir, struct buf *out)
{
	char *mount;
	pid_t pid = read_info(state_dir, &mount);
	if (daemon_pid_alive(pid) && mount) {
		buf_printf(out, "%s is in use by orchfs pid %d on %s; stop it with: fusermount3 -u %s",
			   state_dir, (int)pid, mount, mount);
		free(mount);
		return;
	}
	free(mount);
	pid_t listed = read_pid_file(state_dir);
	if (daemon_pid_alive(listed)) {
		buf_printf(out, "%s is in use by orchfs pid %d (starting or stopping: it serves no "
			   "mount now); stop it with: kill %d", state_dir, (int)listed, (int)listed);
		return;
	}
	/* no file names a running daemon (a crash left them, or none was
	 * written yet): whoever has the lock open holds it */
	char lock[PATH_MAX], comm[32] = "";
	snprintf(lock, sizeof lock, "%s/orchfs.lock", state_dir);
	pid_t holder = proc_holding(lock);
	if (holder && proc_comm(holder, comm, sizeof comm))
		buf_printf(out, "%s is in use by pid %d (%s), which holds %s; stop it with: kill %d",
			   state_dir, (int)holder, comm, lock, (int)holder);
	else
		buf_printf(out, "%s is in use by another orchfs (its lock, %s, is held; no running "
			   "daemon is recorded in %s/daemon.json)", state_dir, lock, state_dir);
}

struct serving {
	const char *mount;
	long pid;
	char *state_dir;
	size_t size;
};

/* a descriptor on STATE_DIR/orchfs.lock whose daemon.json names this
 * process and the mount */
static bool serves(void *arg, char *target, size_t len)
{
	struct serving *s = arg;
	static const char suffix[] = "/orchfs.lock";
	size_t sl = sizeof suffix - 1;
	if (len <= sl || strcmp(target + len - sl, suffix))
		return false;
	target[len - sl] = '\0';
	char *m;
	pid_t listed = read_info(target, &m);
	bool yes = listed == (pid_t)s->pid && m && !strcmp(m, s->mount);
	free(m);
	if (yes)
		snprintf(s->state_dir, s->size, "%s", target);
	return yes;
}

static bool serving_proc(void *arg, long pid)
{
	struct serving *s = arg;
	s->pid = pid;
	return daemon_pid_alive((pid_t)pid) && each_fd(pid, serves, s);
}

int daemon_serving(const char *mount, pid_t *pid, char *state_dir, size_t size)
{
	*pid = 0;
	if (size)
		state_dir[0] = '\0';
	char found[PATH_MAX];
	if (!runner_find_mount("fuse.orchfs", mount, found, sizeof found))
		return 0;
	/* each orchfs holds its state directory's lock open: the one whose
	 * daemon.json names it and this mount serves it */
	struct serving s = {mount, 0, state_dir, size};
	*pid = each_proc(serving_proc, &s);
	return 1;
}
