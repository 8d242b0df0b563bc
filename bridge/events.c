/* events: seq numbering and the bounded history of event lines. */
#include "events.h"

#include <stdlib.h>
#include <string.h>

void events_init(struct events *ev, size_t capacity)
{
	memset(ev, 0, sizeof *ev);
	pthread_mutex_init(&ev->lock, NULL);
	ev->cap = capacity ? capacity : 1;
	ev->ring = xcalloc(ev->cap, sizeof *ev->ring);
}

void events_destroy(struct events *ev)
{
	for (size_t i = 0; i < ev->count; i++)
		free(ev->ring[(ev->head + i) % ev->cap].line);
	free(ev->ring);
	pthread_mutex_destroy(&ev->lock);
}

uint64_t events_publish(struct events *ev, const char *channel, const char *type,
			cJSON *data, char **line_out)
{
	cJSON *root = cJSON_CreateObject();
	pthread_mutex_lock(&ev->lock);
	uint64_t seq = ++ev->seq;
	json_add_i64(root, "seq", (int64_t)seq);
	json_add_time(root, "ts", time_now_ms());
	cJSON_AddStringToObject(root, "channel", channel);
	cJSON_AddStringToObject(root, "type", type);
	cJSON_AddItemToObject(root, "data", data ? data : cJSON_CreateObject());
	struct buf line = BUF_INIT;
	json_emit(root, &line);

	if (ev->count == ev->cap) {
		free(ev->ring[ev->head].line);
		ev->head = (ev->head + 1) % ev->cap;
		ev->count--;
		ev->evicted++;
	}
	struct event_rec *rec = &ev->ring[(ev->head + ev->count) % ev->cap];
	rec->seq = seq;
	strncpy(rec->channel, channel, sizeof rec->channel - 1);
	rec->channel[sizeof rec->channel - 1] = '\0';
	rec->len = line.len;
	rec->line = buf_steal(&line);
	ev->count++;
	ev->published++;
	if (line_out)
		*line_out = xstrndup(rec->line, rec->len);
	pthread_mutex_unlock(&ev->lock);
	return seq;
}

uint64_t events_seq(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t s = ev->seq;
	pthread_mutex_unlock(&ev->lock);
	return s;
}

uint64_t events_oldest(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t s = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	pthread_mutex_unlock(&ev->lock);
	return s;
}
