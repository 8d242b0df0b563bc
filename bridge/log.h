/* log: the daemon's own log, one line per thing worth knowing afterwards
 * (README, "The daemon"): STATE_DIR/orchfs.log once detached, stderr with -f.
 *   2026-12-06T14:40:00.123Z INFO worker 3 started (task build, track t1, pid 4567)
 *   2026-12-06T14:40:02.001Z WARN refused write to mma/workers/spawn: EINVAL (400) ...
 * A line is one write(2) on an O_APPEND descriptor, so lines of different
 * threads never mix. A write can block (a full disk, a stderr nobody reads),
 * so none is ever made under orch.lock: orch_log_later keeps lines made
 * there until the lock is released (orch_log_flush). */
#ifndef ORCHFS_LOG_H
#define ORCHFS_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"

/* OFF is zero, so a zeroed config (the unit tests') logs nothing. */
enum orch_log_level { ORCH_LOG_OFF, ORCH_LOG_ERROR, ORCH_LOG_WARN, ORCH_LOG_INFO, ORCH_LOG_DEBUG };

struct orch_log {
	enum orch_log_level level;   /* lines more detailed than this are dropped */
	int fd;                      /* where lines go, when level is not OFF */
	bool nonblocking;            /* a reader's pipe or socket: a line it has no room for is dropped */
	bool socket;                 /* ... a socket, told not to wait at each send */
	unsigned long dropped;       /* lines dropped so (atomic: the one counter a const log moves) */
};

/* Longer messages are cut (on a character), so a line stays one atomic
 * write even on a pipe (PIPE_BUF). */
#define LOG_LINE_MAX 2048

/* "error", "warn", "info", "debug": the level, or ORCH_LOG_OFF for anything else. */
enum orch_log_level log_level_parse(const char *name);
const char *log_level_name(enum orch_log_level level);   /* "INFO" */
bool log_enabled(const struct orch_log *l, enum orch_log_level level);
/* Appends one line, newline-terminated: the time (ms since the epoch, UTC),
 * the level and msg, whose control characters and bytes that are not UTF-8
 * become \n, \t or \xHH, so that a line is always one line of text. */
void log_format(struct buf *out, int64_t ms, enum orch_log_level level, const char *msg,
		size_t len);
/* Formats and writes one line now: never under orch.lock. */
void log_write(const struct orch_log *l, enum orch_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vwrite(const struct orch_log *l, enum orch_log_level level, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
/* With -f the log is stderr, which may be a pipe or a socket nobody
 * drains: the log gets a descriptor of its own that never blocks (the
 * file's own mode is left alone: others share it), and a line with no room
 * is dropped and counted, told in the next line that goes through. */
void log_use_stderr(struct orch_log *l);
/* Writes lines made by log_format, one write(2) each. */
void log_put(const struct orch_log *l, const char *lines, size_t len);

#define log_error(l, ...) log_write((l), ORCH_LOG_ERROR, __VA_ARGS__)
#define log_warn(l, ...) log_write((l), ORCH_LOG_WARN, __VA_ARGS__)
#define log_info(l, ...) log_write((l), ORCH_LOG_INFO, __VA_ARGS__)
#define log_debug(l, ...) log_write((l), ORCH_LOG_DEBUG, __VA_ARGS__)

#endif
