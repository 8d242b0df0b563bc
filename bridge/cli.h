/* cli: the orchfs command for people, the same binary as the daemon
 * (README, "The orchfs command"; orchfs(1)):
 *   orchfs ps -a; orchfs tracks; orchfs logs -f build; orchfs run plan.json --wait
 * Its tables are made from the daemon's JSON by the functions below, which
 * the tests call directly. */
#ifndef ORCHFS_CLI_H
#define ORCHFS_CLI_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

/* Is word one of the commands (argv[1] of `orchfs ps`)? */
bool cli_is_command(const char *word);
/* Is argv a command (`orchfs [--url U|--mount M|...] COMMAND ...`), not
 * the daemon's `orchfs [OPTIONS] MOUNTPOINT`? */
bool cli_wanted(int argc, char **argv);
/* Runs `orchfs COMMAND ...`; returns the exit status. */
int cli_main(int argc, char **argv);

/* The exit status for a failure with errno (orchfs(1), EXIT STATUS). */
int cli_exit_status(int errnum);

/* "850ms", "12.3s", "4m05s", "2h03m", "3d04h" */
void cli_format_duration(double seconds, char *out, size_t size);
/* One argument as sh reads it back: 'it'\''s' */
void cli_shell_quote(const char *arg, struct buf *out);
/* A time as the daemon writes it ("2026-12-06T14:39:39.641Z") in ms since
 * the epoch, or -1. */
int64_t cli_parse_time(const char *iso);

/* The tables, from workers.json's "workers", tracks.json's "tracks" and a
 * list of tasks; now_ms is for the runtime of running workers. */
void cli_workers_table(const cJSON *workers, bool all, int64_t now_ms, struct buf *out);
void cli_tracks_table(const cJSON *tracks, struct buf *out);
void cli_tasks_table(const cJSON *tasks, struct buf *out);
/* One event as a line for people: "SEQ TIME CHANNEL TYPE DATA". */
void cli_event_line(const char *json, struct buf *out);

/* What `orchfs top` shows, kept up to date from the event stream. */
struct top_worker {
	long long id;
	char task[72], track[72];
	int64_t started_ms;
	double cost_usd;
};
struct top {
	char pipeline[16];
	int max_workers;
	double tick_hz, cpu_percent;
	double cost_usd;
	uint64_t seq;
	cJSON *tracks;                 /* tracks.json's "tracks" */
	struct top_worker *workers;    /* the running ones, by id */
	size_t nworkers, cap;
};
/* One event (or telemetry frame) applied; true when the tracks need reading again. */
bool cli_top_apply(struct top *t, const char *json);
void cli_top_render(const struct top *t, int64_t now_ms, int cols, int rows, struct buf *out);
void cli_top_free(struct top *t);

#endif
