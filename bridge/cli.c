/* cli: the orchfs command's subcommands (cli.h). Each is a few reads or one
 * write through a client (client.h), so it works the same on a mount and
 * over HTTP, and a failure prints the daemon's own message:
 *   orchfs kill 9999      # orchfs: no worker 9999   (exit 4, ENOENT)
 */
#include "cli.h"
#include "client.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/statfs.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "daemon_info.h"
#include "json.h"
#include "orch.h"

#define EXIT_USAGE 2

struct cli {
	struct client client;
	bool json, all, follow, wait;
	const char *task, *track, *channels, *grace;
	uint64_t since;
	const char *mount, *url, *token_file, *state_dir;
	int argc;          /* the command's own arguments */
	char **argv;
};

static const struct {
	int errnum, status;
} exit_table[] = {
	{EINVAL, 3}, {ENOENT, 4}, {EEXIST, 5}, {EBUSY, 6}, {ELOOP, 7}, {EACCES, 8}, {EPERM, 8},
	{EFBIG, 9}, {ERANGE, 10}, {EOVERFLOW, 11}, {EAGAIN, 12}, {ENOTCONN, 13},
};

int cli_exit_status(int errnum)
{
	for (size_t i = 0; i < sizeof exit_table / sizeof exit_table[0]; i++)
		if (exit_table[i].errnum == errnum)
			return exit_table[i].status;
	return 1;
}

static int fail(const struct orch_err *err)
{
	fprintf(stderr, "orchfs: %s\n", err->message);
	if (err->errnum == EACCES && strstr(err->message, "token"))
		fputs("orchfs: give the daemon's token with --token-file FILE (it is STATE_DIR/token"
		      " where the daemon runs) or $ORCHFS_TOKEN\n", stderr);
	return cli_exit_status(err->errnum);
}

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("orchfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n(orchfs help, or man orchfs)\n", stderr);
	va_end(ap);
	return EXIT_USAGE;
}

/* ---- formatting ---- */

void cli_format_duration(double s, char *out, size_t size)
{
	if (!(s >= 0))
		snprintf(out, size, "-");
	else if (s < 1)
		snprintf(out, size, "%dms", (int)(s * 1000));
	else if (s < 60)
		snprintf(out, size, "%.1fs", s);
	else if (s < 3600)
		snprintf(out, size, "%dm%02ds", (int)s / 60, (int)s % 60);
	else if (s < 86400)
		snprintf(out, size, "%dh%02dm", (int)(s / 3600), (int)fmod(s, 3600) / 60);
	else
		snprintf(out, size, "%dd%02dh", (int)(s / 86400), (int)fmod(s, 86400) / 3600);
}

void cli_shell_quote(const char *arg, struct buf *out)
{
	if (*arg && strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				"_-./=:,@%+") == strlen(arg)) {
		buf_puts(out, arg);
		return;
	}
	buf_putc(out, '\'');
	for (const char *p = arg; *p; p++)
		if (*p == '\'')
			buf_puts(out, "'\\''");
		else
			buf_putc(out, *p);
	buf_putc(out, '\'');
}

int64_t cli_parse_time(const char *iso)
{
	struct tm tm = {0};
	int ms = 0;
	if (!iso || sscanf(iso, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm) * 1000 + ms;
}

/* Columns wide enough for their widest cell, counted in characters. */
struct table {
	size_t ncols, nrows;
	char **cells;
	size_t cap;
};

static size_t display_width(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void table_row(struct table *t, ...)
{
	va_list ap;
	va_start(ap, t);
	for (size_t i = 0; i < t->ncols; i++) {
		const char *cell = va_arg(ap, const char *);
		ARRAY_GROW(t->cells, t->cap, t->nrows * t->ncols + i + 1);
		t->cells[t->nrows * t->ncols + i] = xstrdup(cell ? cell : "-");
	}
	va_end(ap);
	t->nrows++;
}

static void table_print(struct table *t, struct buf *out)
{
	size_t width[16] = {0};
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = display_width(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			buf_puts(out, cell);
			if (c + 1 < t->ncols)
				buf_printf(out, "%*s", (int)(width[c] - display_width(cell) + 2), "");
		}
		buf_putc(out, '\n');
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
}

static const char *str_of(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double num_of(const cJSON *o, const char *key, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool worker_running(const cJSON *w)
{
	const char *s = str_of(w, "status");
	return s && (!strcmp(s, "running") || !strcmp(s, "pending"));
}

void cli_workers_table(const cJSON *workers, bool all, int64_t now, struct buf *out)
{
	struct table t = {.ncols = 7};
	table_row(&t, "ID", "TASK", "TRACK", "STATUS", "RUNTIME", "COST", "EXIT");
	const cJSON *w;
	cJSON_ArrayForEach(w, workers) {
		bool running = worker_running(w);
		if (!all && !running)
			continue;
		char id[24], runtime[24], cost[32], exit_s[24];
		snprintf(id, sizeof id, "%.0f", num_of(w, "id", 0));
		double rt = num_of(w, "runtime_s", -1);
		int64_t started = cli_parse_time(str_of(w, "started_at"));
		if (rt < 0 && running && started >= 0)
			rt = (double)(now - started) / 1000;
		cli_format_duration(rt, runtime, sizeof runtime);
		snprintf(cost, sizeof cost, "$%.4f",
			 num_of(cJSON_GetObjectItemCaseSensitive(w, "usage"), "cost_usd", 0));
		const char *sig = str_of(w, "signal");
		double code = num_of(w, "exit_code", -1);
		if (sig)
			snprintf(exit_s, sizeof exit_s, "SIG%s", sig);
		else if (code >= 0)
			snprintf(exit_s, sizeof exit_s, "%.0f", code);
		else
			snprintf(exit_s, sizeof exit_s, "-");
		table_row(&t, id, str_of(w, "task"), str_of(w, "track"), str_of(w, "status"), runtime,
			  cost, exit_s);
	}
	table_print(&t, out);
}

static double count_of(const cJSON *by_status, const char *status)
{
	return num_of(by_status, status, 0);
}

void cli_tracks_table(const cJSON *tracks, struct buf *out)
{
	struct table t = {.ncols = 8};
	table_row(&t, "TRACK", "STATUS", "PROGRESS", "RUNNING", "FAILED", "COST", "BUDGET", "TITLE");
	const cJSON *k;
	cJSON_ArrayForEach(k, tracks) {
		const cJSON *by = cJSON_GetObjectItemCaseSensitive(k, "tasks_by_status");
		double total = num_of(k, "task_count", 0);
		double done = count_of(by, "done") + count_of(by, "skipped");
		char progress[48], running[24], failed[24], cost[32], budget[32];
		snprintf(progress, sizeof progress, "%.0f/%.0f %3.0f%%", done, total,
			 total > 0 ? 100 * done / total : 100);
		snprintf(running, sizeof running, "%.0f", count_of(by, "running"));
		snprintf(failed, sizeof failed, "%.0f", count_of(by, "failed") + count_of(by, "killed"));
		snprintf(cost, sizeof cost, "$%.4f", num_of(k, "cost_usd", 0));
		double b = num_of(k, "budget_usd", -1);
		if (b >= 0)
			snprintf(budget, sizeof budget, "$%.4f", b);
		else
			snprintf(budget, sizeof budget, "-");
		table_row(&t, str_of(k, "id"), str_of(k, "status"), progress, running, failed, cost,
			  budget, str_of(k, "title"));
	}
	table_print(&t, out);
}

void cli_tasks_table(const cJSON *tasks, struct buf *out)
{
	struct table t = {.ncols = 8};
	table_row(&t, "TASK", "TRACK", "STATUS", "PRIO", "WORKER", "RETRIES", "DEPS", "WAITING");
	const cJSON *k;
	cJSON_ArrayForEach(k, tasks) {
		char prio[24], worker[24], retries[48];
		snprintf(prio, sizeof prio, "%.0f", num_of(k, "priority", 0));
		double wid = num_of(k, "worker", -1);
		if (wid >= 0)
			snprintf(worker, sizeof worker, "%.0f", wid);
		else
			snprintf(worker, sizeof worker, "-");
		snprintf(retries, sizeof retries, "%.0f/%.0f", num_of(k, "retries_left", 0),
			 num_of(k, "retries", 0));
		struct buf deps = BUF_INIT;
		const cJSON *d;
		cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(k, "deps")) {
			if (deps.len)
				buf_putc(&deps, ',');
			buf_puts(&deps, cJSON_GetStringValue(d) ? cJSON_GetStringValue(d) : "?");
		}
		const cJSON *waiting = cJSON_GetObjectItemCaseSensitive(k, "waiting");
		table_row(&t, str_of(k, "id"), str_of(k, "track"), str_of(k, "status"), prio, worker,
			  retries, deps.len ? deps.data : "-", str_of(waiting, "reason"));
		buf_free(&deps);
	}
	table_print(&t, out);
}

void cli_event_line(const char *json, struct buf *out)
{
	cJSON *e = cJSON_Parse(json);
	const char *ts = str_of(e, "ts");
	char *data = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "data"));
	buf_printf(out, "%.0f %s %s %s %s\n", num_of(e, "seq", 0), ts && strlen(ts) > 11 ? ts + 11 : "-",
		   str_of(e, "channel") ? str_of(e, "channel") : "-",
		   str_of(e, "type") ? str_of(e, "type") : "-", data ? data : "null");
	free(data);
	cJSON_Delete(e);
}

/* ---- the commands ---- */

static int read_json(struct cli *c, const char *path, cJSON **out, struct orch_err *err)
{
	struct buf b = BUF_INIT;
	int rc = client_read(&c->client, path, &b, err);
	if (!rc) {
		*out = cJSON_ParseWithLength(b.data ? b.data : "", b.len);
		if (!*out)
			rc = err_set(err, EIO, "%s: not JSON", path);
	}
	buf_free(&b);
	return rc;
}

static void emit(struct buf *out)
{
	fwrite(out->data ? out->data : "", 1, out->len, stdout);
	buf_free(out);
}

static void emit_json(const cJSON *v)
{
	struct buf b = BUF_INIT;
	if (v)
		json_write(&b, v);
	else
		buf_puts(&b, "null");
	buf_putc(&b, '\n');
	emit(&b);
}

static int cmd_ps(struct cli *c)
{
	struct orch_err err = {0};
	cJSON *doc;
	if (c->argc)
		return usage_error("ps takes no argument but -a (%s?)", c->argv[0]);
	if (read_json(c, "mma/workers.json", &doc, &err))
		return fail(&err);
	const cJSON *workers = cJSON_GetObjectItemCaseSensitive(doc, "workers");
	if (c->json) {
		cJSON *shown = cJSON_CreateArray();
		const cJSON *w;
		cJSON_ArrayForEach(w, workers)
			if (c->all || worker_running(w))
				cJSON_AddItemReferenceToArray(shown, (cJSON *)w);
		emit_json(shown);
		cJSON_Delete(shown);
	} else {
		struct buf out = BUF_INIT;
		cli_workers_table(workers, c->all, time_now_ms(), &out);
		emit(&out);
	}
	cJSON_Delete(doc);
	return 0;
}

static int cmd_tracks(struct cli *c)
{
	struct orch_err err = {0};
	cJSON *doc;
	if (c->argc)
		return usage_error("tracks takes no argument (%s?)", c->argv[0]);
	if (read_json(c, "mma/tracks.json", &doc, &err))
		return fail(&err);
	const cJSON *tracks = cJSON_GetObjectItemCaseSensitive(doc, "tracks");
	if (c->json) {
		emit_json(tracks);
	} else {
		struct buf out = BUF_INIT;
		cli_tracks_table(tracks, &out);
		emit(&out);
	}
	cJSON_Delete(doc);
	return 0;
}

static int cmd_tasks(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc > 1)
		return usage_error("tasks takes one track at most (%s?)", c->argv[1]);
	cJSON *tracks = NULL, *all = cJSON_CreateArray();
	int rc = 0;
	if (c->argc && !id_valid(c->argv[0])) {
		rc = err_set(&err, ENOENT, "no track %s", c->argv[0]);
		goto out;
	} else if (c->argc) {
		tracks = cJSON_CreateArray();
		cJSON *one = cJSON_CreateObject();
		cJSON_AddStringToObject(one, "id", c->argv[0]);
		cJSON_AddItemToArray(tracks, one);
	} else if ((rc = read_json(c, "mma/tracks.json", &tracks, &err))) {
		goto out;
	}
	const cJSON *k;
	const cJSON *list = cJSON_IsArray(tracks) ? tracks : cJSON_GetObjectItemCaseSensitive(tracks, "tracks");
	cJSON_ArrayForEach(k, list) {
		const char *id = str_of(k, "id");
		char path[160];
		snprintf(path, sizeof path, "mma/tracks/%s/info.json", id ? id : "");
		cJSON *info;
		if ((rc = read_json(c, path, &info, &err))) {
			if (err.errnum == ENOENT)
				err_set(&err, ENOENT, "no track %s", id);
			goto out;
		}
		cJSON *tasks = cJSON_DetachItemFromObjectCaseSensitive(info, "tasks");
		cJSON *t;
		while (tasks && tasks->child && (t = cJSON_DetachItemViaPointer(tasks, tasks->child)))
			cJSON_AddItemToArray(all, t);
		cJSON_Delete(tasks);
		cJSON_Delete(info);
	}
	if (c->json) {
		emit_json(all);
	} else {
		struct buf out = BUF_INIT;
		cli_tasks_table(all, &out);
		emit(&out);
	}
out:
	cJSON_Delete(tracks);
	cJSON_Delete(all);
	return rc ? fail(&err) : 0;
}

static bool all_digits(const char *s)
{
	return *s && strspn(s, "0123456789") == strlen(s);
}

/* A worker named by id, or a task's latest worker: its id into id. */
static int resolve_worker(struct cli *c, const char *name, char *id, size_t size, struct orch_err *err)
{
	if (name && all_digits(name)) {
		snprintf(id, size, "%s", name);
		return 0;
	}
	if (!name || !id_valid(name))
		return err_set(err, ENOENT, "no worker or task %s", name ? name : "");
	char path[160];
	snprintf(path, sizeof path, "mma/tasks/%s/info.json", name);
	cJSON *info;
	if (read_json(c, path, &info, err))
		return err->errnum == ENOENT ? err_set(err, ENOENT, "no worker or task %s", name)
					     : -err->errnum;
	double w = num_of(info, "worker", -1);
	cJSON_Delete(info);
	if (w < 0)
		return err_set(err, ENOENT, "task %s has had no worker yet", name);
	snprintf(id, size, "%.0f", w);
	return 0;
}

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* A follower (-f, --wait, top) stops on Ctrl-C or TERM where it waits, and
 * puts the terminal back; other commands die of it at once. */
static void catch_interrupts(void)
{
	struct sigaction sa = {.sa_handler = on_interrupt};   /* no SA_RESTART: the wait returns */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static int cmd_logs(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc != 1)
		return usage_error("logs wants one worker id or task");
	char id[32], log[64], status[64];
	if (resolve_worker(c, c->argv[0], id, sizeof id, &err))
		return fail(&err);
	snprintf(log, sizeof log, "mma/workers/%s/log", id);
	snprintf(status, sizeof status, "mma/workers/%s/status", id);
	uint64_t offset = 0;
	if (c->follow)
		catch_interrupts();
	/* -f: like tail -f, four times a second, and done once the worker is:
	 * its last bytes are read after its end is seen */
	for (bool ended = false;;) {
		struct buf b = BUF_INIT;
		if (client_read_from(&c->client, log, offset, &b, &err)) {
			buf_free(&b);
			if (interrupted)
				return 0;
			if (err.errnum == ENOENT)
				err_set(&err, ENOENT, "no worker %s", id);
			return fail(&err);
		}
		offset += b.len;
		emit(&b);
		fflush(stdout);
		if (!c->follow || ended || interrupted)
			return 0;
		struct buf s = BUF_INIT;
		ended = client_read(&c->client, status, &s, &err) || !s.data ||
			(strncmp(s.data, "running", 7) && strncmp(s.data, "pending", 7));
		buf_free(&s);
		if (!ended)
			usleep(250 * 1000);
	}
}

/* The seq of the last event, and of the oldest kept (cheap: telemetry's). */
static int event_bounds(struct cli *c, uint64_t *last, uint64_t *oldest, struct orch_err *err)
{
	cJSON *tm;
	int rc = read_json(c, "system/telemetry.json", &tm, err);
	if (rc)
		return rc;
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(tm, "events");
	*last = (uint64_t)num_of(ev, "seq", 0);
	double depth = num_of(ev, "depth", 0);
	*oldest = *last > depth ? *last - (uint64_t)depth : 0;
	cJSON_Delete(tm);
	return 0;
}

/* Is every name of list ("dag,workers") a channel? */
static bool channels_known(const char *list)
{
	static const char *const known[] = {"workers", "dag",    "pipeline", "context",
					    "metrics", "system", "telemetry"};
	for (const char *p = list; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
		size_t n = strcspn(p, ","), k = 0;
		while (k < sizeof known / sizeof known[0] &&
		       !(strlen(known[k]) == n && !strncmp(known[k], p, n)))
			k++;
		if (k == sizeof known / sizeof known[0])
			return false;
	}
	return *list != '\0';
}

/* Is channel one of list ("dag,workers"; NULL: all)? */
static bool on_channels(const char *channel, const char *list)
{
	if (!list || !*list)
		return true;
	size_t n = channel ? strlen(channel) : 0;
	for (const char *p = list; n && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
		if (strncmp(p, channel, n) == 0 && (p[n] == ',' || !p[n]))
			return true;
	}
	return false;
}

static int cmd_events(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc)
		return usage_error("events takes options only (%s?)", c->argv[0]);
	uint64_t last = 0, oldest = 0, since = c->since;
	/* without -f: what is kept, up to now; with -f: from now (or --since) on */
	if ((!c->follow || since == CLIENT_SINCE_NOW) && event_bounds(c, &last, &oldest, &err))
		return fail(&err);
	if (since == CLIENT_SINCE_NOW && !c->follow)
		since = oldest;
	if (!c->follow && since >= last)
		return 0;
	struct client_stream *s;
	/* Without -f the stream is read up to the last seq, which only an
	 * unfiltered stream is sure to reach: the channels are picked here. */
	if (client_events(&c->client, since, c->follow ? c->channels : NULL, &s, &err))
		return fail(&err);
	if (c->follow)
		catch_interrupts();
	struct buf line = BUF_INIT, out = BUF_INIT;
	int rc = 0;
	while (!interrupted && (rc = client_stream_next(s, &line, &err)) > 0) {
		cJSON *e = cJSON_Parse(line.data);
		bool caught_up = num_of(e, "seq", 0) >= (double)last;
		bool shown = c->follow || on_channels(str_of(e, "channel"), c->channels);
		cJSON_Delete(e);
		if (!shown) {
			if (caught_up)
				break;
			continue;
		}
		if (c->json) {
			buf_append(&out, line.data, line.len);
			buf_putc(&out, '\n');
		} else {
			cli_event_line(line.data, &out);
		}
		emit(&out);
		fflush(stdout);
		if (!c->follow && caught_up)
			break;
	}
	buf_free(&line);
	client_stream_close(s);
	return rc < 0 && !interrupted ? fail(&err) : 0;
}

/* A control write, its answer in reply (NULL: not wanted). */
static int control(struct cli *c, const char *path, const char *body, cJSON **reply, struct orch_err *err)
{
	struct buf b = BUF_INIT;
	int rc = client_write(&c->client, path, body, strlen(body), &b, err);
	if (!rc && reply)
		*reply = cJSON_ParseWithLength(b.data ? b.data : "null", b.data ? b.len : 4);
	buf_free(&b);
	return rc;
}

static int cmd_spawn(struct cli *c)
{
	struct orch_err err = {0};
	if (!c->argc)
		return usage_error("spawn wants a command: orchfs spawn [--task T] -- CMD ARGS...");
	cJSON *req = cJSON_CreateObject();
	struct buf cmd = BUF_INIT;
	if (c->argc == 1) {
		buf_puts(&cmd, c->argv[0]);   /* one argument: a command line, as sh -c takes it */
	} else {
		for (int i = 0; i < c->argc; i++) {
			if (i)
				buf_putc(&cmd, ' ');
			cli_shell_quote(c->argv[i], &cmd);
		}
	}
	cJSON_AddStringToObject(req, "command", cmd.data);
	buf_free(&cmd);
	if (c->task)
		cJSON_AddStringToObject(req, "task", c->task);
	if (c->track)
		cJSON_AddStringToObject(req, "track", c->track);
	char *body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	cJSON *w = NULL;
	int rc = control(c, "mma/workers/spawn", body, &w, &err);
	free(body);
	if (rc)
		return fail(&err);
	if (c->json)
		emit_json(w);
	else
		printf("%.0f\n", num_of(w, "id", 0));
	cJSON_Delete(w);
	return 0;
}

static int cmd_kill(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc < 1 || c->argc > 2)
		return usage_error("kill wants a worker and a signal at most: orchfs kill WORKER|TASK [SIG] [--grace S]");
	char id[32];
	if (resolve_worker(c, c->argv[0], id, sizeof id, &err))
		return fail(&err);
	/* as JSON, so what was typed reaches the daemon's checks whole */
	cJSON *req = cJSON_CreateObject();
	cJSON_AddNumberToObject(req, "id", atof(id));
	cJSON_AddStringToObject(req, "signal", c->argc > 1 ? c->argv[1] : "TERM");
	if (c->grace) {
		char *end;
		long grace = strtol(c->grace, &end, 10);
		if (end == c->grace || *end || grace < 0) {
			cJSON_Delete(req);
			return usage_error("--grace wants whole seconds, not \"%s\"", c->grace);
		}
		cJSON_AddNumberToObject(req, "grace_s", (double)grace);
	}
	char *body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	int rc = control(c, "mma/workers/kill", body, NULL, &err);
	free(body);
	return rc ? fail(&err) : 0;
}

static int cmd_pipeline(struct cli *c, const char *verb)
{
	struct orch_err err = {0};
	if (c->argc)
		return usage_error("%s takes no argument", verb);
	cJSON *state = NULL;
	bool resume = !strcmp(verb, "resume");
	if (control(c, resume ? "mma/pipeline/resume" : "mma/pipeline/pause", verb, &state, &err))
		return fail(&err);
	if (c->json)
		emit_json(state);
	else
		printf("%s\n", str_of(state, "status") ? str_of(state, "status") : verb);
	cJSON_Delete(state);
	return 0;
}

static int cmd_mutate(struct cli *c, const char *op)
{
	struct orch_err err = {0};
	if (!c->argc)
		return usage_error("%s wants one task or more", op);
	/* one batch: every task or none */
	for (int i = 0; i < c->argc; i++)
		if (!id_valid(c->argv[i])) {   /* a newline in it would be a command of its own */
			err_set(&err, EINVAL, "bad task id \"%s\": ids are [a-z0-9][a-z0-9_-]{0,63}",
				c->argv[i]);
			return fail(&err);
		}
	struct buf lines = BUF_INIT;
	for (int i = 0; i < c->argc; i++)
		buf_printf(&lines, "%s %s\n", op, c->argv[i]);
	cJSON *reply = NULL;
	int rc = control(c, "mma/dag/mutate", lines.data, &reply, &err);
	buf_free(&lines);
	if (!rc && c->json)
		emit_json(reply);
	cJSON_Delete(reply);
	return rc ? fail(&err) : 0;
}

static int read_file(const char *path, struct buf *out, struct orch_err *err)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f)
		return err_set(err, errno, "%s: %s", path, strerror(errno));
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(out, chunk, n);
	int bad = ferror(f);
	if (f != stdin)
		fclose(f);
	return bad ? err_set(err, EIO, "%s: cannot be read", path) : 0;
}

/* The track's state after an event about it: 1 when it has come to its
 * end (done: 0 in *status; failed, or stopped by its budget or kills with
 * nothing left that runs: 1), 0 while it goes on. */
static int track_progress(struct cli *c, const char *id, bool tty, char last_progress[256], int *status,
			  cJSON **last, struct orch_err *err)
{
	char path[160];
	snprintf(path, sizeof path, "mma/tracks/%s/info.json", id);
	cJSON *k;
	if (read_json(c, path, &k, err))
		return -err->errnum;
	const cJSON *by = cJSON_GetObjectItemCaseSensitive(k, "tasks_by_status");
	const char *st = str_of(k, "status") ? str_of(k, "status") : "?";
	double total = num_of(k, "task_count", 0), done = count_of(by, "done") + count_of(by, "skipped");
	double running = count_of(by, "running"), ready = count_of(by, "ready");
	double failed = count_of(by, "failed"), killed = count_of(by, "killed");
	double held = count_of(by, "held");
	char progress[256];
	snprintf(progress, sizeof progress, "%s: %s, %.0f/%.0f done, %.0f running, %.0f failed, %.0f killed, $%.4f",
		 id, st, done, total, running, failed, killed, num_of(k, "cost_usd", 0));
	if (strcmp(progress, last_progress)) {   /* a line when something moved */
		fprintf(stderr, "%s%s%s", tty ? "\r\033[K" : "", progress, tty ? "" : "\n");
		snprintf(last_progress, 256, "%s", progress);
	}
	/* over budget, its ready tasks stay ready; a kill leaves those after
	 * it blocked: neither ends, and nothing runs */
	const char *why = !strcmp(st, "done")	? ""
			: !strcmp(st, "failed") ? "a task failed and nothing left can run"
			: running > 0		? NULL
			: !strcmp(st, "over_budget")
				? "its budget stops it: raise it (mma/tracks/ID/budget) to go on"
			: killed && ready == 0 && held == 0 ? "a task was killed and nothing left can run"
							    : NULL;
	if (why) {
		*status = *why ? 1 : 0;
		fprintf(stderr, "%s%s%s%s\n", tty ? "\n" : "", id, *why ? ": " : ": done", why);
	}
	cJSON_Delete(*last);
	*last = k;
	return why != NULL;
}

static int cmd_run(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc != 1)
		return usage_error("run wants one plan file (- for stdin)");
	struct buf plan = BUF_INIT;
	uint64_t seq = 0, oldest;
	cJSON *track = NULL;
	int rc = read_file(c->argv[0], &plan, &err);
	if (!rc && c->wait)
		rc = event_bounds(c, &seq, &oldest, &err);   /* no event of the run is missed */
	if (!rc)
		rc = control(c, "mma/tracks/create", plan.data ? plan.data : "", &track, &err);
	buf_free(&plan);
	if (rc)
		return fail(&err);
	char id[72];
	snprintf(id, sizeof id, "%s", str_of(track, "id") ? str_of(track, "id") : "?");
	if (!c->json)
		printf("%s\n", id);
	else if (!c->wait)
		emit_json(track);   /* with --wait, the track as it ends */
	fflush(stdout);
	cJSON_Delete(track);
	if (!c->wait)
		return 0;
	struct client_stream *s;
	if (client_events(&c->client, seq, "dag,workers,metrics", &s, &err))
		return fail(&err);
	catch_interrupts();
	bool tty = isatty(STDERR_FILENO);
	int status = 1, end;
	char last[256] = "";
	cJSON *final = NULL;
	struct buf line = BUF_INIT;
	/* the track is read again after each event about it */
	end = track_progress(c, id, tty, last, &status, &final, &err);
	while (!end && !interrupted && (rc = client_stream_next(s, &line, &err)) > 0) {
		cJSON *e = cJSON_Parse(line.data);
		const char *of = str_of(cJSON_GetObjectItemCaseSensitive(e, "data"), "track");
		bool ours = of && !strcmp(of, id);
		cJSON_Delete(e);
		if (ours)
			end = track_progress(c, id, tty, last, &status, &final, &err);
	}
	buf_free(&line);
	client_stream_close(s);
	if (end > 0 && c->json)
		emit_json(final);   /* the track as it ended */
	cJSON_Delete(final);
	if (end > 0)
		return status;
	if (interrupted)
		return 130;
	if (end < 0 || rc < 0)
		return fail(&err);
	return fail(&(struct orch_err){ENOTCONN, "the daemon stopped"});
}

/* ---- status ---- */

/* --mount, else $ORCHFS_MOUNT, else ~/orchfs */
static void mount_default(const struct cli *c, char *path, size_t size)
{
	const char *env = getenv("ORCHFS_MOUNT"), *home = getenv("HOME");
	if (c->mount)
		snprintf(path, size, "%s", c->mount);
	else if (env && *env)
		snprintf(path, size, "%s", env);
	else
		snprintf(path, size, "%s/orchfs", home && *home ? home : "");
}

static int connect_daemon(struct cli *c, struct orch_err *err);

/* status over HTTP: what the API tells of the daemon (its files are not here) */
static int status_remote(struct cli *c)
{
	struct orch_err err = {0};
	cJSON *tm = NULL;
	struct buf word = BUF_INIT;
	int rc = connect_daemon(c, &err);
	if (!rc)
		rc = read_json(c, "system/telemetry.json", &tm, &err);
	if (!rc)
		rc = client_read(&c->client, "mma/pipeline/status", &word, &err);
	if (!rc) {
		char url[300], upt[24];
		snprintf(url, sizeof url, "http://%s%s%s:%s", strchr(c->client.host, ':') ? "[" : "",
			 c->client.host, strchr(c->client.host, ':') ? "]" : "", c->client.port);
		double up = num_of(tm, "uptime_s", -1);
		char pipeline[32];
		snprintf(pipeline, sizeof pipeline, "%.*s", (int)strcspn(word.data ? word.data : "?", "\n"),
			 word.data ? word.data : "?");
		if (c->json) {
			cJSON *d = cJSON_CreateObject();
			cJSON_AddStringToObject(d, "url", url);
			cJSON_AddNumberToObject(d, "uptime_s", up);
			cJSON_AddStringToObject(d, "pipeline", pipeline);
			emit_json(d);
			cJSON_Delete(d);
		} else {
			cli_format_duration(up, upt, sizeof upt);
			printf("orchfs at %s, up %s\npipeline   %s\n", url, upt, pipeline);
		}
	}
	cJSON_Delete(tm);
	buf_free(&word);
	client_close(&c->client);
	return rc ? fail(&err) : 0;
}

static int cmd_status(struct cli *c)
{
	struct orch_err err = {0};
	if (c->argc)
		return usage_error("status takes no argument (%s?)", c->argv[0]);
	const char *mount_env = getenv("ORCHFS_MOUNT"), *url_env = getenv("ORCHFS_URL");
	if (c->url || (!c->mount && !c->state_dir && !(mount_env && *mount_env) && url_env && *url_env))
		return status_remote(c);
	/* the state directory named, else the one of the daemon serving the
	 * mount (--mount, $ORCHFS_MOUNT, ~/orchfs), else the default */
	char *dir = NULL, served[4096], mount[4096];
	pid_t serving;
	mount_default(c, mount, sizeof mount);
	struct statfs sfs;
	if (!c->state_dir && statfs(mount, &sfs) != 0 && errno == ENOTCONN) {
		err_set(&err, ENOTCONN, "the daemon serving %s is gone (a stale mount); its state "
			"directory: orchfs --state-dir DIR status", mount);
		return fail(&err);
	}
	if (c->state_dir)
		dir = xstrdup(c->state_dir);
	else if (daemon_serving(mount, &serving, served, sizeof served) && served[0])
		dir = xstrdup(served);
	else
		dir = daemon_default_state_dir();
	struct buf path = BUF_INIT, b = BUF_INIT;
	buf_printf(&path, "%s/daemon.json", dir);
	int rc = read_file(path.data, &b, &err);
	cJSON *d = rc ? NULL : cJSON_ParseWithLength(b.data ? b.data : "", b.len);
	double pid = num_of(d, "pid", 0);
	if (!d || pid <= 0 || daemon_pid_alive((pid_t)pid) != 1) {
		if (d)
			rc = err_set(&err, ENOTCONN, "no orchfs runs on %s (pid %.0f is gone)", dir, pid);
		else
			rc = err_set(&err, ENOTCONN, "no orchfs runs on %s", dir);
	}
	if (!rc) {
		double up = (double)(time_now_ms() / 1000) - num_of(d, "started_unix", 0);
		cJSON_AddNumberToObject(d, "uptime_s", up);
		if (c->json) {
			emit_json(d);
		} else {
			char upt[24];
			cli_format_duration(up, upt, sizeof upt);
			printf("orchfs %s, pid %.0f, up %s\n", str_of(d, "version") ? str_of(d, "version") : "?",
			       pid, upt);
			static const char *const keys[][2] = {
				{"mount", "mount"}, {"state dir", "state_dir"}, {"http", "http"},
				{"ws", "ws"}, {"token", "token_file"}, {"log", "log"}};
			for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
				printf("%-10s %s\n", keys[i][0], str_of(d, keys[i][1]) ? str_of(d, keys[i][1]) : "off");
		}
	}
	cJSON_Delete(d);
	buf_free(&b);
	buf_free(&path);
	free(dir);
	return rc ? fail(&err) : 0;
}

/* ---- top ---- */

static struct top_worker *top_find(struct top *t, long long id)
{
	for (size_t i = 0; i < t->nworkers; i++)
		if (t->workers[i].id == id)
			return &t->workers[i];
	return NULL;
}

static void top_add(struct top *t, long long id, const char *task, const char *track, int64_t started)
{
	if (top_find(t, id))
		return;
	ARRAY_GROW(t->workers, t->cap, t->nworkers + 1);
	struct top_worker *w = &t->workers[t->nworkers++];
	memset(w, 0, sizeof *w);
	w->id = id;
	snprintf(w->task, sizeof w->task, "%s", task ? task : "-");
	snprintf(w->track, sizeof w->track, "%s", track ? track : "-");
	w->started_ms = started;
}

bool cli_top_apply(struct top *t, const char *json)
{
	cJSON *e = cJSON_Parse(json);
	const char *type = str_of(e, "type"), *channel = str_of(e, "channel");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "data");
	bool tracks = false;
	if (channel && !strcmp(channel, "telemetry")) {
		t->tick_hz = num_of(cJSON_GetObjectItemCaseSensitive(d, "loop"), "rate_hz", t->tick_hz);
		t->cpu_percent = num_of(cJSON_GetObjectItemCaseSensitive(d, "process"), "cpu_percent",
					t->cpu_percent);
	} else if (type) {
		t->seq = (uint64_t)num_of(e, "seq", (double)t->seq);
		long long id = (long long)num_of(d, "id", -1);
		if (!strcmp(type, "worker.spawned") || !strcmp(type, "worker.adopted")) {
			top_add(t, id, str_of(d, "task"), str_of(d, "track"), cli_parse_time(str_of(e, "ts")));
		} else if (!strcmp(type, "worker.exited") || !strcmp(type, "worker.lost")) {
			struct top_worker *w = top_find(t, id);
			if (w)
				*w = t->workers[--t->nworkers];
		} else if (!strcmp(type, "usage.reported")) {
			double cost = num_of(d, "cost_usd", 0);
			struct top_worker *w = top_find(t, (long long)num_of(d, "worker", -1));
			if (w)
				w->cost_usd += cost;
			t->cost_usd += cost;
			tracks = true;
		} else if (!strcmp(type, "pipeline.max_workers")) {
			t->max_workers = (int)num_of(d, "to", t->max_workers);
		} else if (!strcmp(type, "pipeline.status") && str_of(d, "to")) {
			snprintf(t->pipeline, sizeof t->pipeline, "%s", str_of(d, "to"));
		}
		tracks = tracks || !strncmp(type, "task.", 5) || !strncmp(type, "track.", 6) ||
			 !strncmp(type, "dag.", 4);
	}
	cJSON_Delete(e);
	return tracks;
}

static void bar(double part, double whole, int width, struct buf *out)
{
	int n = whole > 0 ? (int)(width * part / whole + 0.5) : width;
	buf_putc(out, '[');
	for (int i = 0; i < width; i++)
		buf_puts(out, i < n ? "#" : ".");
	buf_putc(out, ']');
}

static int by_id(const void *a, const void *b)
{
	long long x = ((const struct top_worker *)a)->id, y = ((const struct top_worker *)b)->id;
	return (x > y) - (x < y);
}

/* Each line from start on cut to cols characters: a wrapped line would
 * scroll the screen. */
static void clip_lines(struct buf *out, size_t start, int cols)
{
	size_t w = start, width = 0;
	for (size_t r = start; r < out->len; r++) {
		char ch = out->data[r];
		if (ch == '\n')
			width = 0;
		else if (((unsigned char)ch & 0xC0) != 0x80 && width++ >= (size_t)cols)
			continue;
		else if (((unsigned char)ch & 0xC0) == 0x80 && width > (size_t)cols)
			continue;   /* the rest of a character cut off */
		out->data[w++] = ch;
	}
	out->len = w;
	out->data[w] = '\0';
}

void cli_top_render(const struct top *t, int64_t now, int cols, int rows, struct buf *out)
{
	size_t start = out->len;
	buf_printf(out, "orchfs top  pipeline %s  workers %zu/%d  cost $%.4f\nticks %.1f/s  cpu %.1f%%  seq %llu\n\n",
		   t->pipeline, t->nworkers, t->max_workers, t->cost_usd, t->tick_hz, t->cpu_percent,
		   (unsigned long long)t->seq);
	int lines = 3, barw = cols > 100 ? 30 : 16;
	buf_puts(out, "TRACK            STATUS      PROGRESS\n");
	lines++;
	const cJSON *k;
	cJSON_ArrayForEach(k, t->tracks) {
		if (lines >= rows / 2)
			break;
		const cJSON *by = cJSON_GetObjectItemCaseSensitive(k, "tasks_by_status");
		double total = num_of(k, "task_count", 0), done = count_of(by, "done") + count_of(by, "skipped");
		buf_printf(out, "%-16.16s %-11s ", str_of(k, "id") ? str_of(k, "id") : "?",
			   str_of(k, "status") ? str_of(k, "status") : "?");
		bar(done, total, barw, out);
		buf_printf(out, " %.0f/%.0f  %.0f run  $%.4f", done, total, count_of(by, "running"),
			   num_of(k, "cost_usd", 0));
		double budget = num_of(k, "budget_usd", -1);
		if (budget >= 0)
			buf_printf(out, " of $%.4f", budget);
		buf_putc(out, '\n');
		lines++;
	}
	buf_puts(out, "\nWORKER  TASK                 TRACK                RUNTIME   COST\n");
	lines += 2;
	struct top_worker *sorted = xmalloc((t->nworkers ? t->nworkers : 1) * sizeof *sorted);
	if (t->nworkers) {
		memcpy(sorted, t->workers, t->nworkers * sizeof *sorted);
		qsort(sorted, t->nworkers, sizeof *sorted, by_id);
	}
	for (size_t i = 0; i < t->nworkers; i++) {
		if (lines >= rows - 1) {
			buf_printf(out, "... and %zu more\n", t->nworkers - i);
			break;
		}
		char rt[24];
		cli_format_duration(sorted[i].started_ms >= 0 ? (double)(now - sorted[i].started_ms) / 1000 : -1,
				    rt, sizeof rt);
		buf_printf(out, "%-7lld %-20.20s %-20.20s %-9s $%.4f\n", sorted[i].id, sorted[i].task,
			   sorted[i].track, rt, sorted[i].cost_usd);
		lines++;
	}
	free(sorted);
	clip_lines(out, start, cols);
}

void cli_top_free(struct top *t)
{
	cJSON_Delete(t->tracks);
	free(t->workers);
	memset(t, 0, sizeof *t);
}

struct top_feed {
	struct client_stream *stream;
	int pipe_w;
};

/* The stream blocks in read(2) (the mount's events file has no poll): a
 * thread reads it and hands each line on through a pipe. It lives until the
 * process ends; what it holds is its own (the feed, the stream). */
static void *top_reader(void *arg)
{
	struct top_feed *f = arg;
	struct buf line = BUF_INIT;
	struct orch_err err;
	while (client_stream_next(f->stream, &line, &err) > 0) {
		buf_putc(&line, '\n');
		if (write(f->pipe_w, line.data, line.len) != (ssize_t)line.len)
			break;
	}
	buf_free(&line);
	close(f->pipe_w);
	return NULL;
}

static int top_read_tracks(struct cli *c, struct top *t, struct orch_err *err)
{
	cJSON *doc;
	int rc = read_json(c, "mma/tracks.json", &doc, err);
	if (!rc) {
		cJSON_Delete(t->tracks);
		t->tracks = cJSON_DetachItemFromObjectCaseSensitive(doc, "tracks");
		cJSON_Delete(doc);
	}
	return rc;
}

static int top_snapshot(struct cli *c, struct top *t, struct orch_err *err)
{
	cJSON *workers, *fin;
	uint64_t oldest;
	/* the seq first: an event that comes while the rest is read is
	 * replayed; applied twice, it changes nothing, but a usage report's
	 * cost in that instant would be counted twice */
	int rc = event_bounds(c, &t->seq, &oldest, err);
	if (!rc)
		rc = read_json(c, "mma/workers.json", &workers, err);
	if (rc)
		return rc;
	const cJSON *w;
	cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(workers, "workers")) {
		if (!worker_running(w))
			continue;
		top_add(t, (long long)num_of(w, "id", 0), str_of(w, "task"), str_of(w, "track"),
			cli_parse_time(str_of(w, "started_at")));
		t->workers[t->nworkers - 1].cost_usd =
			num_of(cJSON_GetObjectItemCaseSensitive(w, "usage"), "cost_usd", 0);
	}
	cJSON_Delete(workers);
	struct buf word = BUF_INIT;
	if (!(rc = client_read(&c->client, "mma/pipeline/status", &word, err)) && word.data)
		snprintf(t->pipeline, sizeof t->pipeline, "%.*s", (int)strcspn(word.data, "\n"), word.data);
	buf_reset(&word);
	if (!rc && !(rc = client_read(&c->client, "mma/pipeline/max_workers", &word, err)) && word.data)
		t->max_workers = atoi(word.data);
	buf_free(&word);
	if (!rc && !(rc = read_json(c, "metrics/financial.json", &fin, err))) {
		t->cost_usd = num_of(cJSON_GetObjectItemCaseSensitive(fin, "total"), "cost_usd", 0);
		cJSON_Delete(fin);
	}
	return rc ? rc : top_read_tracks(c, t, err);
}

static int cmd_top(struct cli *c)
{
	struct orch_err err = {0};
	struct top t = {0};
	if (c->argc)
		return usage_error("top takes no argument (%s?)", c->argv[0]);
	if (c->json)
		return usage_error("top is for a terminal: orchfs events -f --json is its stream");
	struct client_stream *s;
	/* the stream from the snapshot's seq: no change falls between */
	if (top_snapshot(c, &t, &err) ||
	    client_events(&c->client, t.seq, "workers,dag,pipeline,metrics,telemetry", &s, &err)) {
		cli_top_free(&t);
		return fail(&err);
	}
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) {
		client_stream_close(s);
		cli_top_free(&t);
		return fail(&(struct orch_err){EIO, "no pipe"});
	}
	/* Ctrl-C and TERM are taken only inside ppoll below, so none is missed
	 * between a look at the flag and the wait; the reader thread inherits
	 * the mask and never sees them. */
	sigset_t stop, before;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, &before);
	catch_interrupts();
	struct top_feed *feed = xmalloc(sizeof *feed);
	*feed = (struct top_feed){s, fds[1]};
	pthread_t reader;
	pthread_create(&reader, NULL, top_reader, feed);
	pthread_detach(reader);

	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	if (tty) {
		raw = saved;
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	fputs("\033[?1049h\033[?25l", stdout);   /* the alternate screen, no cursor */
	struct buf in = BUF_INIT, line = BUF_INIT, screen = BUF_INIT;
	bool dirty = true, stale_tracks = false, quit = false;
	int64_t tracks_read = 0;
	while (!quit && !interrupted) {
		if (stale_tracks && time_now_ms() - tracks_read >= 250) {
			/* at most four reads a second, however many events came; a
			 * failed one is tried again at the next event */
			struct orch_err ignored;
			top_read_tracks(c, &t, &ignored);
			tracks_read = time_now_ms();
			stale_tracks = false;
			dirty = true;
		}
		if (dirty) {
			struct winsize ws = {.ws_row = 24, .ws_col = 80};
			ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws);
			buf_reset(&screen);
			buf_puts(&screen, "\033[H\033[2J");
			cli_top_render(&t, time_now_ms(), ws.ws_col ? ws.ws_col : 80, ws.ws_row ? ws.ws_row : 24,
				       &screen);
			buf_puts(&screen, "q quits");
			fwrite(screen.data, 1, screen.len, stdout);
			fflush(stdout);
			dirty = false;
		}
		struct pollfd p[2] = {{fds[0], POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
		struct timespec quarter = {0, 250 * 1000 * 1000};
		if (ppoll(p, 2, stale_tracks ? &quarter : NULL, &before) < 0)
			continue;   /* a signal: the loop's test sees it */
		if (p[1].revents & (POLLIN | POLLHUP)) {
			char key;
			if (read(STDIN_FILENO, &key, 1) != 1 || key == 'q' || key == 'Q')
				quit = true;
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			char chunk[65536];
			ssize_t r = read(fds[0], chunk, sizeof chunk);
			if (r <= 0) {
				err_set(&err, ENOTCONN, "the daemon stopped");
				break;
			}
			buf_append(&in, chunk, (size_t)r);
			while (buf_take_line(&in, &line)) {
				stale_tracks |= cli_top_apply(&t, line.data);
				dirty = true;
			}
		}
	}
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	if (tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	buf_free(&in);
	buf_free(&line);
	buf_free(&screen);
	cli_top_free(&t);
	return err.errnum ? fail(&err) : 0;
}

/* ---- dispatch ---- */

static const char *const commands[] = {
	"ps", "tasks", "tracks", "logs", "events", "spawn", "kill", "pause", "freeze", "resume",
	"retry", "skip", "hold", "release", "cancel", "run", "top", "status", "help",
};

bool cli_is_command(const char *word)
{
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(word, commands[i]))
			return true;
	return false;
}

bool cli_wanted(int argc, char **argv)
{
	/* the options that may come before a command: `orchfs --url U ps`;
	 * all but --state-dir are the command's alone, so with one of them
	 * an unknown word is a mistyped command, not a mount point */
	static const char *const with_value[] = {"--mount", "--url", "--token-file", "--state-dir"};
	bool ours = false;
	int i = 1;
	while (i < argc) {
		bool skipped = !strcmp(argv[i], "--json");
		ours |= skipped || (strncmp(argv[i], "--state-dir", 11) && !strncmp(argv[i], "--", 2));
		for (size_t k = 0; k < sizeof with_value / sizeof with_value[0] && !skipped; k++) {
			size_t n = strlen(with_value[k]);
			if (!strncmp(argv[i], with_value[k], n) && argv[i][n] == '=')
				skipped = true;
			else if (!strcmp(argv[i], with_value[k]) && i + 1 < argc)
				skipped = (++i, true);
		}
		if (!skipped)
			break;
		i++;
	}
	return i < argc && (cli_is_command(argv[i]) || (ours && argv[i][0] != '-'));
}

static void cli_usage(FILE *out)
{
	fputs("usage: orchfs COMMAND [OPTIONS] [ARGS]   (the daemon: orchfs [OPTIONS] MOUNTPOINT)\n"
	      "  ps [-a]                  running workers (-a: all)\n"
	      "  tracks                   tracks: progress, cost against budget\n"
	      "  tasks [TRACK]            tasks\n"
	      "  logs [-f] WORKER|TASK    a worker's log (a task's latest worker)\n"
	      "  events [-f] [--since N] [--channels a,b]\n"
	      "  spawn [--task T] [--track K] -- CMD [ARGS...]   prints the worker's id\n"
	      "  kill WORKER|TASK [SIGNAL] [--grace S]\n"
	      "  pause | freeze | resume\n"
	      "  retry | skip | hold | release | cancel TASK...\n"
	      "  run PLAN.json [--wait]   create a track; --wait follows it to its end\n"
	      "  top                      a live view; q quits\n"
	      "  status                   the daemon of the state directory\n"
	      "options: --json, --mount DIR (default $ORCHFS_MOUNT, else ~/orchfs),\n"
	      "  --url http://HOST:PORT (default $ORCHFS_URL when there is no mount),\n"
	      "  --token-file FILE (default $ORCHFS_TOKEN, else STATE_DIR/token), --state-dir DIR\n"
	      "See orchfs(1).\n",
	      out);
}

static int connect_daemon(struct cli *c, struct orch_err *err)
{
	const char *url = c->url, *mount_env = getenv("ORCHFS_MOUNT");
	if (!url && !c->mount && !(mount_env && *mount_env)) {
		url = getenv("ORCHFS_URL");   /* a worker on another machine */
		if (url && !*url)
			url = NULL;
	}
	if (url) {
		/* --token-file, else $ORCHFS_TOKEN (a worker's own token, as
		 * workers have it), else the daemon's own when it runs here */
		char token[AUTH_TOKEN_HEX + 1] = "";
		const char *env = getenv("ORCHFS_TOKEN"), *given = NULL;
		int rc = 0;
		if (c->token_file) {
			rc = auth_load_token(c->token_file, false, token, err);
			if (rc)   /* no token to show: refused, as a wrong one is */
				rc = -(err->errnum = EACCES);
			given = token;
		} else if (env && *env) {
			for (const char *p = env; *p && !rc; p++)
				if (*p <= ' ' || *p > '~')
					rc = err_set(err, EACCES, "$ORCHFS_TOKEN holds a character a token has not");
			given = env;
		} else {
			char *dir = c->state_dir ? xstrdup(c->state_dir) : daemon_default_state_dir();
			struct buf path = BUF_INIT;
			struct orch_err ignored;
			buf_printf(&path, "%s/token", dir);
			if (access(path.data, R_OK) == 0 && auth_load_token(path.data, false, token, &ignored) == 0)
				given = token;
			buf_free(&path);
			free(dir);
		}
		return rc ? rc : client_use_url(&c->client, url, given, err);
	}
	char path[4096];
	mount_default(c, path, sizeof path);
	return client_use_mount(&c->client, path, err);
}

int cli_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"all", no_argument, NULL, 'a'},
		{"follow", no_argument, NULL, 'f'},
		{"json", no_argument, NULL, 'j'},
		{"wait", no_argument, NULL, 'w'},
		{"since", required_argument, NULL, 's'},
		{"channels", required_argument, NULL, 'c'},
		{"task", required_argument, NULL, 't'},
		{"track", required_argument, NULL, 'k'},
		{"grace", required_argument, NULL, 'g'},
		{"mount", required_argument, NULL, 'M'},
		{"url", required_argument, NULL, 'U'},
		{"token-file", required_argument, NULL, 'T'},
		{"state-dir", required_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct cli c = {.since = CLIENT_SINCE_NOW};
	int opt;
	opterr = 0;   /* said below, the command's way */
	while ((opt = getopt_long(argc, argv, ":afh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'a': c.all = true; break;
		case 'f': c.follow = true; break;
		case 'j': c.json = true; break;
		case 'w': c.wait = true; break;
		case 's': {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg || optarg[0] == '-')
				return usage_error("--since wants an event seq, not \"%s\"", optarg);
			c.since = n;
			break;
		}
		case 'c':
			if (!channels_known(optarg))
				return usage_error("--channels %s: a list of workers, dag, pipeline, context, "
						   "metrics, system, telemetry", optarg);
			c.channels = optarg;
			break;
		case 't': c.task = optarg; break;
		case 'k': c.track = optarg; break;
		case 'g': c.grace = optarg; break;
		case 'M': c.mount = optarg; break;
		case 'U': {
			struct client probe;
			struct orch_err why;
			if (client_use_url(&probe, optarg, NULL, &why))
				return usage_error("--url %s", why.message);
			client_close(&probe);
			c.url = optarg;
			break;
		}
		case 'T': c.token_file = optarg; break;
		case 'S': c.state_dir = optarg; break;
		case 'h': cli_usage(stdout); return 0;
		case ':': return usage_error("%s wants a value", argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option -%c", optopt);
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("no command: orchfs ps, orchfs tracks, ... (orchfs help)");
	if (!cli_is_command(argv[optind]))
		return usage_error("unknown command \"%s\"", argv[optind]);
	const char *cmd = argv[optind];
	c.argc = argc - optind - 1;
	c.argv = argv + optind + 1;
	if (!strcmp(cmd, "help")) {
		cli_usage(stdout);
		return 0;
	}
	if (!strcmp(cmd, "status"))
		return cmd_status(&c);
	struct orch_err err = {0};
	if (connect_daemon(&c, &err))
		return fail(&err);
	int status;
	if (!strcmp(cmd, "ps"))
		status = cmd_ps(&c);
	else if (!strcmp(cmd, "tracks"))
		status = cmd_tracks(&c);
	else if (!strcmp(cmd, "tasks"))
		status = cmd_tasks(&c);
	else if (!strcmp(cmd, "logs"))
		status = cmd_logs(&c);
	else if (!strcmp(cmd, "events"))
		status = cmd_events(&c);
	else if (!strcmp(cmd, "spawn"))
		status = cmd_spawn(&c);
	else if (!strcmp(cmd, "kill"))
		status = cmd_kill(&c);
	else if (!strcmp(cmd, "pause") || !strcmp(cmd, "freeze") || !strcmp(cmd, "resume"))
		status = cmd_pipeline(&c, cmd);
	else if (!strcmp(cmd, "run"))
		status = cmd_run(&c);
	else if (!strcmp(cmd, "top"))
		status = cmd_top(&c);
	else
		status = cmd_mutate(&c, cmd);
	client_close(&c.client);
	if (fflush(stdout) == EOF && !status) {   /* a full disk, a closed pipe */
		fprintf(stderr, "orchfs: cannot write the output: %s\n", strerror(errno));
		status = 1;
	}
	return status;
}
