/* test_events: seq numbering, event lines and the bounded history; filtered
 * reads of whole lines, the commit watermark, waits, and channel lists. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "events.h"

static void test_publish(void **state)
{
	struct events ev;
	events_init(&ev, 4);
	assert_int_equal(events_seq(&ev), 0);
	assert_int_equal(events_oldest(&ev), 1);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "task", "t1");
	assert_int_equal(events_publish(&ev, EVK_TASK_STATUS, d, NULL, NULL), 1);
	/* the record names its task, and the line is what readers get */
	assert_string_equal(ev.ring[ev.head].task, "t1");
	char *line = xstrndup(ev.ring[ev.head].line, ev.ring[ev.head].len);
	cJSON *parsed = cJSON_Parse(line);
	assert_non_null(parsed);
	assert_int_equal(cJSON_GetObjectItem(parsed, "seq")->valueint, 1);
	assert_string_equal(cJSON_GetObjectItem(parsed, "channel")->valuestring, "dag");
	assert_string_equal(cJSON_GetObjectItem(parsed, "type")->valuestring, "task.status");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(parsed, "data"), "task")->valuestring, "t1");
	const char *ts = cJSON_GetObjectItem(parsed, "ts")->valuestring;
	assert_int_equal(strlen(ts), 24);
	assert_int_equal(ts[23], 'Z');
	assert_int_equal(line[strlen(line) - 1], '\n');
	cJSON_Delete(parsed);
	free(line);
	events_destroy(&ev);
}

/* Memory holds at most EVENTS_MAX_BYTES of lines, whatever the count allows. */
static void test_history_bytes(void **state)
{
	struct events ev;
	events_init(&ev, 1u << 20);
	char big[4096];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	size_t n = 2 * EVENTS_MAX_BYTES / sizeof big;
	for (size_t i = 0; i < n; i++) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "blob", big);
		events_publish(&ev, EVK_DAEMON_STARTED, d, NULL, NULL);
	}
	assert_true(ev.held <= EVENTS_MAX_BYTES);
	assert_true(ev.count < n && ev.count > n / 3);
	assert_int_equal(ev.evicted + ev.count, n);
	assert_int_equal(events_oldest(&ev), n - ev.count + 1);
	events_destroy(&ev);
}

/* Events the store has not taken yet are never evicted: a plan of many tasks
 * is many events in one commit, and each must reach the disk. */
static void test_history_keeps_what_is_not_stored(void **state)
{
	struct events ev;
	events_init(&ev, 4);
	ev.gathered = 2;   /* as a store would say: it has taken 1 and 2 */
	for (int i = 0; i < 10; i++)
		events_publish(&ev, EVK_DAEMON_STARTED, NULL, NULL, NULL);
	assert_int_equal(ev.evicted, 2);
	assert_int_equal(ev.count, 8);
	assert_int_equal(events_oldest(&ev), 3);
	for (size_t i = 0; i < ev.count; i++)
		assert_int_equal(ev.ring[(ev.head + i) % ev.cap].seq, 3 + i);
	events_destroy(&ev);
}

static void test_history_bound(void **state)
{
	struct events ev;
	events_init(&ev, 4);
	for (int i = 0; i < 10; i++)
		events_publish(&ev, EVK_DAEMON_STARTED, NULL, NULL, NULL);
	assert_int_equal(events_seq(&ev), 10);
	assert_int_equal(ev.count, 4);
	assert_int_equal(ev.evicted, 6);
	assert_int_equal(events_oldest(&ev), 7);
	/* kept in order, oldest first */
	for (size_t i = 0; i < ev.count; i++)
		assert_int_equal(ev.ring[(ev.head + i) % ev.cap].seq, 7 + i);
	events_destroy(&ev);
}

/* An event kind of the channel named. */
static enum event_kind kind_of(const char *channel)
{
	for (int k = 0; k < EVK_COUNT; k++)
		if (event_kinds[k].channel == events_channel_bit(channel))
			return (enum event_kind)k;
	fail_msg("no kind on channel %s", channel);
	return EVK_COUNT;
}

/* Publishes one event of each channel name in turn: seq i has channels[(i-1) % n]. */
static void publish_round(struct events *ev, const char *const *channels, size_t n, int count)
{
	for (int i = 0; i < count; i++)
		events_publish(ev, kind_of(channels[(size_t)i % n]), NULL, NULL, NULL);
}

/* The seqs of the lines in out, in order, into seqs (at most max). */
static size_t line_seqs(const struct buf *out, uint64_t *seqs, size_t max)
{
	size_t n = 0;
	const char *p = out->data;
	while (p && *p && n < max) {
		const char *nl = strchr(p, '\n');
		assert_non_null(nl);
		cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
		assert_non_null(j);
		seqs[n++] = (uint64_t)cJSON_GetObjectItem(j, "seq")->valuedouble;
		cJSON_Delete(j);
		p = nl + 1;
	}
	return n;
}

static void test_read_filter(void **state)
{
	static const char *const chans[] = {"workers", "dag", "pipeline"};
	struct events ev;
	events_init(&ev, 64);
	publish_round(&ev, chans, 3, 9);
	struct buf out = BUF_INIT;
	uint64_t last = 0, oldest = 0, seqs[16];

	assert_int_equal(events_read(&ev, 0, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	size_t n = line_seqs(&out, seqs, 16);
	assert_int_equal(n, 9);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(seqs[i], i + 1);
	assert_int_equal(last, 9);

	/* only dag (seqs 2, 5, 8) after 2; the cursor still passes the others */
	buf_reset(&out);
	assert_int_equal(events_read(&ev, 2, EV_DAG, 1 << 20, &out, &last, &oldest), 0);
	n = line_seqs(&out, seqs, 16);
	assert_int_equal(n, 2);
	assert_int_equal(seqs[0], 5);
	assert_int_equal(seqs[1], 8);
	assert_int_equal(last, 9);

	/* nothing new: no line, the cursor stays */
	buf_reset(&out);
	assert_int_equal(events_read(&ev, 9, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(last, 9);

	/* a mask of nothing reads nothing but moves past everything */
	assert_int_equal(events_read(&ev, 0, 0, 0, &out, &last, &oldest), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(last, 9);
	buf_free(&out);
	events_destroy(&ev);
}

static void test_read_whole_lines(void **state)
{
	struct events ev;
	events_init(&ev, 16);
	for (int i = 0; i < 5; i++)
		events_publish(&ev, EVK_DAEMON_STARTED, NULL, NULL, NULL);
	struct buf one = BUF_INIT, out = BUF_INIT;
	uint64_t last, oldest, seqs[8];
	assert_int_equal(events_read(&ev, 0, EV_ALL_EVENTS, 1, &one, &last, &oldest), 0);
	size_t len = one.len;   /* every line here has the same length */
	assert_int_equal(line_seqs(&one, seqs, 8), 1);
	assert_int_equal(last, 1);

	/* room for two and a half lines: two whole ones */
	assert_int_equal(events_read(&ev, 0, EV_ALL_EVENTS, 2 * len + len / 2, &out, &last, &oldest), 0);
	assert_int_equal(out.len, 2 * len);
	assert_int_equal(last, 2);
	/* room for less than one: still one, never a piece */
	buf_reset(&out);
	assert_int_equal(events_read(&ev, 2, EV_ALL_EVENTS, 0, &out, &last, &oldest), 0);
	assert_int_equal(out.len, len);
	assert_int_equal(line_seqs(&out, seqs, 8), 1);
	assert_int_equal(seqs[0], 3);
	assert_int_equal(last, 3);
	/* appending: max counts what the buffer already holds */
	assert_int_equal(events_read(&ev, 3, EV_ALL_EVENTS, 2 * len, &out, &last, &oldest), 0);
	assert_int_equal(out.len, 2 * len);
	assert_int_equal(last, 4);
	buf_free(&one);
	buf_free(&out);
	events_destroy(&ev);
}

static void test_read_too_old(void **state)
{
	struct events ev;
	events_init(&ev, 4);
	for (int i = 0; i < 10; i++)
		events_publish(&ev, EVK_DAEMON_STARTED, NULL, NULL, NULL);
	struct buf out = BUF_INIT;
	uint64_t last = 99, oldest = 0, seqs[8];
	assert_int_equal(events_read(&ev, 2, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), -ERANGE);
	assert_int_equal(oldest, 7);
	assert_int_equal(out.len, 0);
	assert_int_equal(events_read(&ev, 5, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), -ERANGE);
	/* the event just before the oldest kept one is the oldest cursor that works */
	assert_int_equal(events_read(&ev, 6, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	assert_int_equal(line_seqs(&out, seqs, 8), 4);
	assert_int_equal(seqs[0], 7);
	assert_int_equal(seqs[3], 10);
	assert_int_equal(last, 10);
	buf_free(&out);
	events_destroy(&ev);
}

static void test_read_committed_only(void **state)
{
	struct events ev;
	events_init(&ev, 16);
	ev.autocommit = false;   /* as when a store commits */
	for (int i = 0; i < 3; i++)
		events_publish(&ev, EVK_TASK_STATUS, NULL, NULL, NULL);
	assert_int_equal(events_seq(&ev), 3);
	assert_int_equal(events_committed(&ev), 0);
	struct buf out = BUF_INIT;
	uint64_t last, oldest, seqs[8];
	assert_int_equal(events_read(&ev, 0, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	assert_int_equal(out.len, 0);
	assert_int_equal(last, 0);
	events_commit(&ev, 2);
	assert_int_equal(events_read(&ev, 0, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	assert_int_equal(line_seqs(&out, seqs, 8), 2);
	assert_int_equal(last, 2);
	events_commit(&ev, 1);   /* the mark never goes back */
	assert_int_equal(events_committed(&ev), 2);
	buf_free(&out);
	events_destroy(&ev);
}

struct waiter {
	struct events *ev;
	uint64_t after, got;
	int timeout_ms;
	int64_t took_ms;
	int done;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *wait_thread(void *arg)
{
	struct waiter *w = arg;
	int64_t t0 = mono_ms();
	w->got = events_wait(w->ev, w->after, w->timeout_ms);
	w->took_ms = mono_ms() - t0;
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_wait(void **state)
{
	struct events ev;
	events_init(&ev, 16);
	events_publish(&ev, EVK_DAEMON_STARTED, NULL, NULL, NULL);

	/* already past: returns at once */
	int64_t t0 = mono_ms();
	assert_int_equal(events_wait(&ev, 0, 5000), 1);
	assert_true(mono_ms() - t0 < 1000);
	/* nothing comes: the timeout ends it, with the mark unchanged */
	t0 = mono_ms();
	assert_int_equal(events_wait(&ev, 1, 50), 1);
	assert_true(mono_ms() - t0 >= 40);

	/* a publish wakes a waiter with no timeout */
	struct waiter w = {.ev = &ev, .after = 1, .timeout_ms = -1};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	usleep(20000);
	events_publish(&ev, EVK_WORKER_SIGNAL, NULL, NULL, NULL);
	pthread_join(t, NULL);
	assert_int_equal(w.got, 2);

	/* a commit, not the publish, wakes a waiter when a store commits */
	ev.autocommit = false;
	w = (struct waiter){.ev = &ev, .after = 2, .timeout_ms = 5000};
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	usleep(20000);
	events_publish(&ev, EVK_WORKER_SIGNAL, NULL, NULL, NULL);
	events_commit(&ev, 3);
	pthread_join(t, NULL);
	assert_int_equal(w.got, 3);
	assert_true(w.took_ms < 4000);

	/* events_wake_all ends a wait with nothing new (shutdown) */
	w = (struct waiter){.ev = &ev, .after = 3, .timeout_ms = 10000};
	assert_int_equal(pthread_create(&t, NULL, wait_thread, &w), 0);
	/* again until it ends: a wake before the waiter waits is not kept */
	for (int i = 0; i < 200 && !__atomic_load_n(&w.done, __ATOMIC_ACQUIRE); i++) {
		usleep(10000);
		events_wake_all(&ev);
	}
	pthread_join(t, NULL);
	assert_int_equal(w.got, 3);
	assert_true(w.took_ms < 5000);
	events_destroy(&ev);
}

static void test_channel_mask(void **state)
{
	char bad[256];
	const char *l = "workers,dag";
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad), EV_WORKERS | EV_DAG);
	l = " dag , telemetry\n";
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad), EV_DAG | EV_TELEMETRY);
	l = "pipeline,context,metrics,system";
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad),
			 EV_PIPELINE | EV_CONTEXT | EV_METRICS | EV_SYSTEM);
	/* the length bounds the list: what follows is not read */
	l = "dagXXX";
	assert_int_equal(events_channel_mask(l, 3, bad, sizeof bad), EV_DAG);

	bad[0] = '\0';
	l = "dag,bogus";
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad), 0);
	assert_non_null(strstr(bad, "bogus"));
	bad[0] = '\0';
	l = "dag,,workers";
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad), 0);
	assert_true(bad[0] != '\0');
	bad[0] = '\0';
	assert_int_equal(events_channel_mask("", 0, bad, sizeof bad), 0);
	assert_true(bad[0] != '\0');
	l = "Workers";   /* names are exact */
	assert_int_equal(events_channel_mask(l, strlen(l), bad, sizeof bad), 0);

	assert_int_equal(events_channel_bit("telemetry"), EV_TELEMETRY);
	assert_int_equal(events_channel_bit("nope"), 0);
	assert_string_equal(events_channel_name(EV_CONTEXT), "context");
	assert_int_equal(EV_ALL_EVENTS & EV_TELEMETRY, 0);
}

/* Without a store to replay from, a since older than what memory keeps is
 * ERANGE, naming the oldest kept (with one, test_store's round trip reads
 * the older events back from SQLite). */
static void test_history_too_old_without_store(void **state)
{
	(void)state;
	struct events ev;
	events_init(&ev, 4);
	for (int i = 0; i < 10; i++)
		events_publish(&ev, EVK_TASK_STATUS, NULL, NULL, NULL);
	struct buf out = BUF_INIT;
	uint64_t last, oldest = 0;
	assert_int_equal(events_read(&ev, 2, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), -ERANGE);
	assert_int_equal(oldest, 7);
	assert_int_equal(events_read(&ev, 6, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
	assert_int_equal(last, 10);
	buf_free(&out);
	events_destroy(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_history_too_old_without_store),
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_history_bound),
		cmocka_unit_test(test_history_bytes),
		cmocka_unit_test(test_history_keeps_what_is_not_stored),
		cmocka_unit_test(test_read_filter),
		cmocka_unit_test(test_read_whole_lines),
		cmocka_unit_test(test_read_too_old),
		cmocka_unit_test(test_read_committed_only),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_channel_mask),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
