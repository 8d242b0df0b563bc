/* events: every change of state as one event with the next seq, kept in a
 * bounded in-memory history (the store and live readers come on top).
 * An event line is {"seq":N,"ts":"...","channel":"dag","type":"task.status","data":{...}}. */
#ifndef ORCHFS_EVENTS_H
#define ORCHFS_EVENTS_H

#include <pthread.h>
#include <stdint.h>

#include "json.h"

struct event_rec {
	uint64_t seq;
	char channel[16];
	char *line;          /* serialized once, newline-terminated */
	size_t len;
};

struct events {
	pthread_mutex_t lock;
	uint64_t seq;        /* last seq published */
	struct event_rec *ring;
	size_t cap, head, count;
	uint64_t published, evicted;
};

void events_init(struct events *ev, size_t capacity);
void events_destroy(struct events *ev);
/* Publishes one event; takes ownership of data (NULL = {}). When line_out is
 * not NULL it receives a malloc'd copy of the serialized line. */
uint64_t events_publish(struct events *ev, const char *channel, const char *type,
			cJSON *data, char **line_out);
uint64_t events_seq(struct events *ev);
/* Oldest seq still kept (seq+1 when the history is empty). */
uint64_t events_oldest(struct events *ev);

#endif
