/* test_events: seq numbering, event lines and the bounded history. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	char *line = NULL;
	assert_int_equal(events_publish(&ev, "dag", "task.status", d, &line), 1);
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

static void test_history_bound(void **state)
{
	struct events ev;
	events_init(&ev, 4);
	for (int i = 0; i < 10; i++)
		events_publish(&ev, "system", "tick", NULL, NULL);
	assert_int_equal(events_seq(&ev), 10);
	assert_int_equal(ev.count, 4);
	assert_int_equal(ev.evicted, 6);
	assert_int_equal(events_oldest(&ev), 7);
	/* kept in order, oldest first */
	for (size_t i = 0; i < ev.count; i++)
		assert_int_equal(ev.ring[(ev.head + i) % ev.cap].seq, 7 + i);
	events_destroy(&ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_history_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
