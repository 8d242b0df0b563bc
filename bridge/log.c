/* log: formatting and writing the daemon's log lines (log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "orch.h"

static const char *const level_names[] = {"OFF", "ERROR", "WARN", "INFO", "DEBUG"};

enum orch_log_level log_level_parse(const char *name)
{
	for (int i = ORCH_LOG_ERROR; i <= ORCH_LOG_DEBUG; i++)
		if (!strcasecmp(name, level_names[i]))
			return (enum orch_log_level)i;
	return ORCH_LOG_OFF;
}

const char *log_level_name(enum orch_log_level level)
{
	return level <= ORCH_LOG_DEBUG ? level_names[level] : "?";
}

bool log_enabled(const struct orch_log *l, enum orch_log_level level)
{
	return l && level != ORCH_LOG_OFF && level <= l->level;
}

void log_format(struct buf *out, int64_t ms, enum orch_log_level level, const char *msg,
		size_t len)
{
	char when[40];
	time_iso(ms, when, sizeof when);
	size_t start = out->len;
	buf_printf(out, "%s %s ", when, log_level_name(level));
	size_t limit = start + LOG_LINE_MAX - 4;   /* room for "...\n" */
	const unsigned char *p = (const unsigned char *)msg;
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
		if (n > 1 && (n > len - i || utf8_check(msg + i, n) != n))
			n = 0;   /* not UTF-8: the byte is shown, escaped */
		char esc[5];
		const char *piece = msg + i;
		size_t plen = n;
		if (n == 0 || c < 0x20 || c == 0x7f) {
			if (c == '\n' || c == '\t')
				snprintf(esc, sizeof esc, "\\%c", c == '\n' ? 'n' : 't');
			else
				snprintf(esc, sizeof esc, "\\x%02x", c);
			piece = esc;
			plen = strlen(esc);
			n = 1;
		}
		if (out->len + plen > limit) {
			buf_puts(out, "...");
			break;
		}
		buf_append(out, piece, plen);
		i += n;
	}
	buf_putc(out, '\n');
}

void log_use_stderr(struct orch_log *l)
{
	struct stat st;
	if (fstat(STDERR_FILENO, &st) != 0)
		return;
	if (S_ISSOCK(st.st_mode)) {   /* journald's: send(2) is told not to wait, each time */
		l->fd = STDERR_FILENO;
		l->nonblocking = l->socket = true;
		return;
	}
	if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
		return;   /* a file: a write waits for the disk, as any log's */
	/* a description of our own: O_NONBLOCK on the shared one would reach
	 * the shell or the terminal that gave it */
	int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd >= 0) {
		l->fd = fd;
		l->nonblocking = true;
	}
}

/* One line (at most LOG_LINE_MAX bytes, so one atomic write on a pipe):
 * false when a log that must not block had no room for it. */
static bool put_line(const struct orch_log *l, const char *line, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t w = l->socket ? send(l->fd, line + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL)
				      : write(l->fd, line + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && done == 0)
			return false;
		if (w <= 0)
			break;   /* a log that cannot be written has nowhere to say so */
		done += (size_t)w;
	}
	return true;
}

void log_put(const struct orch_log *l, const char *lines, size_t len)
{
	if (!l || l->level == ORCH_LOG_OFF)
		return;
	unsigned long *dropped = (unsigned long *)&l->dropped;
	while (len) {
		const char *nl = memchr(lines, '\n', len);
		size_t n = nl ? (size_t)(nl - lines) + 1 : len;
		unsigned long lost = __atomic_load_n(dropped, __ATOMIC_RELAXED);
		if (lost) {
			struct buf note = BUF_INIT;
			char msg[96];
			int m = snprintf(msg, sizeof msg, "%lu lines dropped: the log's reader was too slow", lost);
			log_format(&note, time_now_ms(), ORCH_LOG_WARN, msg, (size_t)m);
			if (put_line(l, note.data, note.len))
				__atomic_sub_fetch(dropped, lost, __ATOMIC_RELAXED);
			buf_free(&note);
		}
		if (!put_line(l, lines, n))
			__atomic_add_fetch(dropped, 1, __ATOMIC_RELAXED);
		lines += n;
		len -= n;
	}
}

void log_vwrite(const struct orch_log *l, enum orch_log_level level, const char *fmt, va_list ap)
{
	if (!log_enabled(l, level))
		return;
	struct buf msg = BUF_INIT, line = BUF_INIT;
	buf_vprintf(&msg, fmt, ap);
	log_format(&line, time_now_ms(), level, msg.data ? msg.data : "", msg.len);
	log_put(l, line.data, line.len);
	buf_free(&msg);
	buf_free(&line);
}

void log_write(const struct orch_log *l, enum orch_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(l, level, fmt, ap);
	va_end(ap);
}

void orch_log(struct orch *o, enum orch_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(&o->cfg.log, level, fmt, ap);
	va_end(ap);
}

void orch_log_later(struct orch *o, enum orch_log_level level, const char *fmt, ...)
{
	if (!log_enabled(&o->cfg.log, level))
		return;
	struct buf msg = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	log_format(&o->log_later, time_now_ms(), level, msg.data ? msg.data : "", msg.len);
	buf_free(&msg);
}

struct buf orch_log_take(struct orch *o)
{
	struct buf lines = o->log_later;
	o->log_later = (struct buf)BUF_INIT;
	return lines;
}

void orch_log_put(struct orch *o, struct buf *lines)
{
	if (lines->len)
		log_put(&o->cfg.log, lines->data, lines->len);
	buf_free(lines);
}
