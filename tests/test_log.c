/* test_log: the daemon's log lines (time, level, one line of text whatever
 * the message holds, cut on a character), levels, the lines kept under the
 * model's lock, and daemon.json and the message naming a state directory's
 * holder. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon_info.h"
#include "json.h"
#include "log.h"
#include "orch.h"

/* 2026-12-06T14:40:00.123Z */
#define T0 1796568000123LL

static char *line_of(int64_t ms, enum orch_log_level lv, const char *msg, size_t len)
{
	struct buf b = BUF_INIT;
	log_format(&b, ms, lv, msg, len);
	return buf_steal(&b);
}

static void test_format(void **state)
{
	char *l = line_of(T0, ORCH_LOG_INFO, "mounted on /m", 13);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z INFO mounted on /m\n");
	free(l);
	l = line_of(T0, ORCH_LOG_WARN, "", 0);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z WARN \n");
	free(l);
	l = line_of(T0 + 1, ORCH_LOG_ERROR, "x", 1);
	assert_string_equal(l, "2026-12-06T14:40:00.124Z ERROR x\n");
	free(l);
	l = line_of(T0, ORCH_LOG_DEBUG, "x", 1);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z DEBUG x\n");
	free(l);
}

static void test_escapes(void **state)
{
	/* a message that holds a newline must not make a second line (a
	 * forged one), nor carry terminal escapes or bytes that are not UTF-8 */
	static const char msg[] = "a\nb\tc\x1b[31m\x7f\xff\xc3(d \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \\n";
	char *l = line_of(T0, ORCH_LOG_WARN, msg, sizeof msg - 1);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z WARN a\\nb\\tc\\x1b[31m\\x7f\\xff\\xc3(d "
			       "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \\n\n");
	assert_int_equal(utf8_check(l, strlen(l)), strlen(l));
	free(l);
	/* a NUL in the message is a byte like any other */
	l = line_of(T0, ORCH_LOG_INFO, "a\0b", 3);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z INFO a\\x00b\n");
	free(l);
	/* a truncated sequence at the end */
	l = line_of(T0, ORCH_LOG_INFO, "\xe2\x82", 2);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z INFO \\xe2\\x82\n");
	free(l);
	/* overlong and surrogate forms are not UTF-8 */
	l = line_of(T0, ORCH_LOG_INFO, "\xc0\xaf\xed\xa0\x80", 5);
	assert_string_equal(l, "2026-12-06T14:40:00.123Z INFO \\xc0\\xaf\\xed\\xa0\\x80\n");
	free(l);
}

static void test_cut(void **state)
{
	/* a long message is cut to LOG_LINE_MAX, on a character, marked */
	size_t n = 3 * LOG_LINE_MAX;
	char *msg = xmalloc(n);
	for (size_t i = 0; i + 1 < n; i += 2)
		memcpy(msg + i, "\xc3\xa9", 2);   /* é, two bytes each */
	char *l = line_of(T0, ORCH_LOG_INFO, msg, n);
	size_t len = strlen(l);
	assert_true(len <= LOG_LINE_MAX);
	assert_true(len > LOG_LINE_MAX - 8);
	assert_memory_equal(l + len - 4, "...\n", 4);
	assert_int_equal(utf8_check(l, len), len);
	assert_null(memchr(l, '\n', len - 1));
	free(l);
	/* escapes are never cut in their middle either */
	memset(msg, '\x01', n);
	l = line_of(T0, ORCH_LOG_INFO, msg, n);
	len = strlen(l);
	assert_true(len <= LOG_LINE_MAX);
	assert_memory_equal(l + len - 8, "\\x01...\n", 8);
	free(l);
	/* exactly at the limit: not cut */
	size_t room = LOG_LINE_MAX - strlen("2026-12-06T14:40:00.123Z INFO ") - 4;
	memset(msg, 'a', room);
	l = line_of(T0, ORCH_LOG_INFO, msg, room);
	assert_int_equal(strlen(l), LOG_LINE_MAX - 3);
	assert_null(strstr(l, "..."));
	free(l);
	free(msg);
}

static void test_levels(void **state)
{
	assert_int_equal(log_level_parse("error"), ORCH_LOG_ERROR);
	assert_int_equal(log_level_parse("warn"), ORCH_LOG_WARN);
	assert_int_equal(log_level_parse("INFO"), ORCH_LOG_INFO);
	assert_int_equal(log_level_parse("debug"), ORCH_LOG_DEBUG);
	assert_int_equal(log_level_parse("off"), ORCH_LOG_OFF);
	assert_int_equal(log_level_parse("warning"), ORCH_LOG_OFF);
	assert_int_equal(log_level_parse(""), ORCH_LOG_OFF);

	int p[2];
	assert_int_equal(pipe(p), 0);
	struct orch_log l = {ORCH_LOG_WARN, p[1]};
	log_info(&l, "not %s", "this");
	log_debug(&l, "nor this");
	log_warn(&l, "this %d", 1);
	log_error(&l, "and this");
	struct orch_log off = {0};
	off.fd = p[1];
	log_error(&off, "never: a zeroed log is off");
	log_error(NULL, "nor without one");
	close(p[1]);
	char got[512];
	ssize_t n = read(p[0], got, sizeof got - 1);
	assert_true(n > 0);
	got[n] = '\0';
	close(p[0]);
	/* time, level, message: the lines asked for, no more */
	char *second = strchr(got, '\n');
	assert_non_null(second);
	assert_int_equal(strlen(got), (size_t)(second - got) + 1 + 25 + strlen("ERROR and this\n"));
	assert_memory_equal(got + 24, " WARN this 1\n", 13);
	assert_string_equal(second + 1 + 24, " ERROR and this\n");
}

static void test_later(void **state)
{
	/* lines made under the lock are kept, in order, until taken */
	struct orch o;
	memset(&o, 0, sizeof o);
	int p[2];
	assert_int_equal(pipe(p), 0);
	o.cfg.log = (struct orch_log){ORCH_LOG_INFO, p[1]};
	orch_log_later(&o, ORCH_LOG_INFO, "worker %d started", 1);
	orch_log_later(&o, ORCH_LOG_DEBUG, "dropped");
	orch_log_later(&o, ORCH_LOG_INFO, "worker %d ended", 1);
	struct buf lines = orch_log_take(&o);
	assert_int_equal(o.log_later.len, 0);
	assert_non_null(strstr(lines.data, " INFO worker 1 started\n"));
	assert_non_null(strstr(lines.data, " INFO worker 1 ended\n"));
	assert_null(strstr(lines.data, "dropped"));
	assert_true(strstr(lines.data, "started") < strstr(lines.data, "ended"));
	size_t len = lines.len;
	orch_log_put(&o, &lines);
	assert_null(lines.data);
	close(p[1]);
	char got[512];
	assert_int_equal(read(p[0], got, sizeof got), (ssize_t)len);
	close(p[0]);
}

/* A log that must not block (a pipe nobody drains) drops what has no room,
 * counts it, and says so in the next line that goes through. */
static void test_dropped(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe2(p, O_NONBLOCK), 0);
	struct orch_log l = {.level = ORCH_LOG_INFO, .fd = p[1], .nonblocking = true};
	int lines = 0;
	while (l.dropped == 0 && lines < 100000) {
		log_info(&l, "line %d, long enough to fill a pipe in a few thousand lines", lines);
		lines++;
	}
	assert_true(l.dropped == 1);
	log_info(&l, "dropped too");
	assert_true(l.dropped == 2);
	char sink[65536];
	while (read(p[0], sink, sizeof sink) > 0)
		;
	log_info(&l, "room again");
	assert_true(l.dropped == 0);
	ssize_t n = read(p[0], sink, sizeof sink - 1);
	assert_true(n > 0);
	sink[n] = '\0';
	assert_non_null(strstr(sink, " WARN 2 lines dropped: the log's reader was too slow\n"));
	assert_non_null(strstr(sink, " INFO room again\n"));
	assert_true(strstr(sink, "WARN 2 lines") < strstr(sink, "room again"));
	close(p[0]);
	close(p[1]);
}

static void test_daemon_json(void **state)
{
	char dir[] = "/tmp/orchfs-log-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct daemon_info d = {4242, "/m \"q\"", dir, "http://127.0.0.1:8999", NULL, NULL, NULL, T0};
	struct orch_err err = {0};
	assert_int_equal(daemon_info_write(&d, &err), 0);
	char path[128];
	snprintf(path, sizeof path, "%s/daemon.json", dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	FILE *f = fopen(path, "r");
	char text[1024];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	cJSON *doc = cJSON_Parse(text);
	assert_non_null(doc);
	assert_int_equal(cJSON_GetObjectItem(doc, "pid")->valueint, 4242);
	assert_string_equal(cJSON_GetObjectItem(doc, "version")->valuestring, ORCHFS_VERSION);
	assert_string_equal(cJSON_GetObjectItem(doc, "mount")->valuestring, "/m \"q\"");
	assert_string_equal(cJSON_GetObjectItem(doc, "state_dir")->valuestring, dir);
	assert_string_equal(cJSON_GetObjectItem(doc, "http")->valuestring, "http://127.0.0.1:8999");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "ws")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "token_file")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(doc, "log")));
	assert_string_equal(cJSON_GetObjectItem(doc, "started_at")->valuestring,
			    "2026-12-06T14:40:00.123Z");
	assert_int_equal((int64_t)cJSON_GetObjectItem(doc, "started_unix")->valuedouble, T0 / 1000);
	cJSON_Delete(doc);

	/* files naming a daemon that is gone: the message says nobody is
	 * recorded, not that pid */
	assert_int_equal(daemon_pid_write(dir, 4242, &err), 0);
	struct buf why = BUF_INIT;
	daemon_describe_holder(dir, &why);
	assert_null(strstr(why.data, "4242"));
	assert_non_null(strstr(why.data, "is in use by"));
	buf_free(&why);
	assert_false(daemon_pid_alive(getpid()));   /* a test, not an orchfs */
	assert_false(daemon_pid_alive(0));

	daemon_info_remove(dir);
	daemon_pid_remove(dir);
	assert_int_equal(rmdir(dir), 0);   /* nothing left, the .tmp files neither */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_later),
		cmocka_unit_test(test_dropped),
		cmocka_unit_test(test_daemon_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
