/* events: seq numbering, the bounded history, the commit watermark readers
 * follow, and filtered reads of whole lines. */
#include "events.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const channel_names[] = {
	"workers", "dag", "pipeline", "context", "metrics", "system", "telemetry",
};
#define NCHANNELS (sizeof channel_names / sizeof channel_names[0])

const struct event_kind_info event_kinds[EVK_COUNT] = {
	[EVK_WORKER_SPAWNED] = {"worker.spawned", EV_WORKERS},
	[EVK_WORKER_SIGNAL] = {"worker.signal", EV_WORKERS},
	[EVK_WORKER_TIMEOUT] = {"worker.timeout", EV_WORKERS},
	[EVK_WORKER_EXITED] = {"worker.exited", EV_WORKERS},
	[EVK_WORKER_LOST] = {"worker.lost", EV_WORKERS},
	[EVK_WORKER_ADOPTED] = {"worker.adopted", EV_WORKERS},
	[EVK_WORKER_RUNNER_STATE] = {"worker.runner_state", EV_WORKERS},
	[EVK_TASK_STATUS] = {"task.status", EV_DAG},
	[EVK_TASK_RETRY] = {"task.retry", EV_DAG},
	[EVK_TASK_SPAWN_FAILED] = {"task.spawn_failed", EV_DAG},
	[EVK_TRACK_STATUS] = {"track.status", EV_DAG},
	[EVK_TRACK_CREATED] = {"track.created", EV_DAG},
	[EVK_TASK_ADDED] = {"dag.task_added", EV_DAG},
	[EVK_TASK_REMOVED] = {"dag.task_removed", EV_DAG},
	[EVK_DEP_ADDED] = {"dag.dep_added", EV_DAG},
	[EVK_DEP_REMOVED] = {"dag.dep_removed", EV_DAG},
	[EVK_PIPELINE_STATUS] = {"pipeline.status", EV_PIPELINE},
	[EVK_PIPELINE_MAX_WORKERS] = {"pipeline.max_workers", EV_PIPELINE},
	[EVK_CONTEXT_INJECTED] = {"context.injected", EV_CONTEXT},
	/* the same to readers; to the notifier, a file that was there already */
	[EVK_CONTEXT_REPLACED] = {"context.injected", EV_CONTEXT},
	[EVK_CONTEXT_REMOVED] = {"context.removed", EV_CONTEXT},
	[EVK_USAGE_REPORTED] = {"usage.reported", EV_METRICS},
	[EVK_TRACK_BUDGET] = {"track.budget", EV_METRICS},
	[EVK_DAEMON_STARTED] = {"daemon.started", EV_SYSTEM},
	[EVK_DAEMON_STOPPING] = {"daemon.stopping", EV_SYSTEM},
	[EVK_DAEMON_STOPPED] = {"daemon.stopped", EV_SYSTEM},
	[EVK_TRACK_BUDGET_EXHAUSTED] = {"track.budget_exhausted", EV_DAG},
	[EVK_TRACK_REMOVED] = {"dag.track_removed", EV_DAG},
	[EVK_TRACK_ARCHIVED] = {"dag.track_archived", EV_DAG},
};

unsigned events_channel_bit(const char *name)
{
	for (size_t i = 0; i < NCHANNELS; i++)
		if (strcmp(name, channel_names[i]) == 0)
			return 1u << i;
	return 0;
}

const char *events_channel_name(unsigned bit)
{
	for (size_t i = 0; i < NCHANNELS; i++)
		if (bit == 1u << i)
			return channel_names[i];
	return "system";
}

unsigned events_channel_mask(const char *list, size_t len, char *bad, size_t badsize)
{
	unsigned mask = 0;
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && list[j] != ',')
			j++;
		char name[32];
		size_t n = j - i;
		while (n && (list[i + n - 1] == ' ' || list[i + n - 1] == '\n'))
			n--;
		while (n && list[i] == ' ') {
			i++;
			n--;
		}
		unsigned bit = 0;
		if (n && n < sizeof name) {
			memcpy(name, list + i, n);
			name[n] = '\0';
			bit = events_channel_bit(name);
		}
		if (!bit) {
			snprintf(bad, badsize, "unknown channel \"%.*s\"; channels are workers, dag, "
					       "pipeline, context, metrics, system, telemetry",
				 (int)(n < 32 ? n : 32), list + i);
			return 0;
		}
		mask |= bit;
		i = j + 1;
	}
	if (!mask)
		snprintf(bad, badsize, "no channel named");
	return mask;
}

void events_init(struct events *ev, size_t capacity)
{
	memset(ev, 0, sizeof *ev);
	mutex_init_pi(&ev->lock);
	cond_init_mono(&ev->cond);
	ev->autocommit = true;
	ev->gathered = UINT64_MAX;
	ev->cap = capacity ? capacity : 1;
	ev->ring = xcalloc(ev->cap, sizeof *ev->ring);
}

static void rec_clear(struct event_rec *r)
{
	free(r->line);
	free(r->task);
	free(r->track);
	free(r->name);
	r->line = r->task = r->track = r->name = NULL;
}

static char *id_of(const cJSON *data, const char *key, const char *fallback)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, key));
	if (!s || !*s)
		s = fallback;
	return s && *s ? xstrdup(s) : NULL;
}

void events_destroy(struct events *ev)
{
	for (size_t i = 0; i < ev->count; i++)
		rec_clear(&ev->ring[(ev->head + i) % ev->cap]);
	free(ev->ring);
	pthread_cond_destroy(&ev->cond);
	pthread_mutex_destroy(&ev->lock);
}

/* The worker an event is about: data.worker, or data.id on the workers channel. */
static int event_worker(unsigned channel, const cJSON *data)
{
	const cJSON *w = cJSON_GetObjectItemCaseSensitive(data, "worker");
	if (!w && channel == EV_WORKERS)
		w = cJSON_GetObjectItemCaseSensitive(data, "id");
	return cJSON_IsNumber(w) ? (int)w->valuedouble : 0;
}

/* Twice the room, the kept events first in order. */
static void ring_grow(struct events *ev)
{
	struct event_rec *ring = xcalloc(ev->cap * 2, sizeof *ring);
	for (size_t i = 0; i < ev->count; i++)
		ring[i] = ev->ring[(ev->head + i) % ev->cap];
	free(ev->ring);
	ev->ring = ring;
	ev->cap *= 2;
	ev->head = 0;
}

/* Evicts the oldest events until one of len bytes fits, but never one the
 * store has not taken yet (a plan of many tasks is many events in one commit):
 * then the history grows past its bounds until the store has them. */
static void ring_make_room(struct events *ev, size_t len)
{
	while (ev->count && (ev->count == ev->cap || ev->held + len > EVENTS_MAX_BYTES)) {
		if (ev->ring[ev->head].seq > ev->gathered) {
			if (ev->count == ev->cap)
				ring_grow(ev);
			return;
		}
		ev->held -= ev->ring[ev->head].len;
		rec_clear(&ev->ring[ev->head]);
		ev->head = (ev->head + 1) % ev->cap;
		ev->count--;
		ev->evicted++;
	}
}

uint64_t events_publish(struct events *ev, enum event_kind kind, cJSON *data, const char *task,
			const char *track)
{
	cJSON *root = cJSON_CreateObject();
	if (!data)
		data = cJSON_CreateObject();
	unsigned bit = event_kinds[kind].channel;
	int worker = event_worker(bit, data);
	char *task_id = id_of(data, "task", task), *track_id = id_of(data, "track", track);
	char *name = bit == EV_CONTEXT ? id_of(data, "name", NULL) : NULL;
	pthread_mutex_lock(&ev->lock);
	uint64_t seq = ++ev->seq;
	json_add_i64(root, "seq", (int64_t)seq);
	json_add_time(root, "ts", time_now_ms());
	cJSON_AddStringToObject(root, "channel", events_channel_name(bit));
	cJSON_AddStringToObject(root, "type", event_kinds[kind].name);
	cJSON_AddItemToObject(root, "data", data);
	struct buf line = BUF_INIT;
	json_emit(root, &line);

	ring_make_room(ev, line.len);
	struct event_rec *rec = &ev->ring[(ev->head + ev->count) % ev->cap];
	rec->seq = seq;
	rec->channel = bit;
	rec->kind = kind;
	__atomic_store_n(&ev->kind_seq[kind], seq, __ATOMIC_RELEASE);
	rec->worker = worker;
	rec->task = task_id;
	rec->track = track_id;
	rec->name = name;
	rec->len = line.len;
	rec->line = buf_steal(&line);
	ev->held += rec->len;
	ev->bytes += rec->len;
	rec->cum = ev->bytes;
	ev->count++;
	if (ev->count > ev->high_water)
		ev->high_water = ev->count;
	ev->published++;
	if (ev->autocommit) {
		ev->committed = seq;
		pthread_cond_broadcast(&ev->cond);
	}
	pthread_mutex_unlock(&ev->lock);
	return seq;
}

void events_restore(struct events *ev, uint64_t seq, unsigned channel, int worker,
		    const char *line, size_t len)
{
	pthread_mutex_lock(&ev->lock);
	ring_make_room(ev, len);
	struct event_rec *rec = &ev->ring[(ev->head + ev->count) % ev->cap];
	rec->seq = seq;
	rec->channel = channel;
	rec->kind = EVK_RESTORED;
	rec->worker = worker;
	rec->line = xstrndup(line, len);
	rec->len = len;
	ev->held += len;
	ev->bytes += len;
	rec->cum = ev->bytes;
	ev->count++;
	ev->seq = seq;
	pthread_mutex_unlock(&ev->lock);
}

void events_restore_done(struct events *ev, uint64_t seq)
{
	pthread_mutex_lock(&ev->lock);
	ev->seq = ev->committed = seq;
	pthread_mutex_unlock(&ev->lock);
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

void events_commit(struct events *ev, uint64_t seq)
{
	pthread_mutex_lock(&ev->lock);
	if (seq > ev->committed) {
		ev->committed = seq;
		pthread_cond_broadcast(&ev->cond);
	}
	pthread_mutex_unlock(&ev->lock);
}

uint64_t events_committed(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t s = ev->committed;
	pthread_mutex_unlock(&ev->lock);
	return s;
}

uint64_t events_wait(struct events *ev, uint64_t after, int timeout_ms)
{
	struct timespec deadline = time_mono_deadline(timeout_ms >= 0 ? timeout_ms : 0);
	pthread_mutex_lock(&ev->lock);
	uint64_t start = ev->published;
	/* A wake without a new event (events_wake_all) also ends the wait. */
	while (ev->committed <= after && ev->published == start) {
		int rc = timeout_ms < 0 ? pthread_cond_wait(&ev->cond, &ev->lock)
					: pthread_cond_timedwait(&ev->cond, &ev->lock, &deadline);
		if (rc == ETIMEDOUT || rc == 0)
			break;
	}
	uint64_t s = ev->committed;
	pthread_mutex_unlock(&ev->lock);
	return s;
}

void events_wake_all(struct events *ev)
{
	pthread_mutex_lock(&ev->lock);
	pthread_cond_broadcast(&ev->cond);
	pthread_mutex_unlock(&ev->lock);
}

uint64_t events_each(struct events *ev, uint64_t after,
		     void (*fn)(void *arg, const struct event_rec *rec), void *arg, bool *lost)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t first_kept = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	if (after + 1 < first_kept) {
		*lost = true;
		after = first_kept - 1;
	}
	for (uint64_t seq = after + 1; seq <= ev->committed; seq++) {
		fn(arg, &ev->ring[(ev->head + (seq - first_kept)) % ev->cap]);
		after = seq;
	}
	pthread_mutex_unlock(&ev->lock);
	return after;
}

void events_too_old(uint64_t after, uint64_t oldest, char *msg, size_t msgsize)
{
	snprintf(msg, msgsize,
		 "seq %" PRIu64 " is older than the oldest kept event (%" PRIu64 "); "
		 "read state.json and follow from its seq", after, oldest);
}

int events_since(struct events *ev, const char *text, size_t len, uint64_t *cursor, char *msg,
		 size_t msgsize)
{
	uint64_t v = 0;
	bool ok = len > 0 && len <= 20;
	for (size_t i = 0; ok && i < len; i++) {
		unsigned d = (unsigned)(text[i] - '0');
		ok = text[i] >= '0' && text[i] <= '9' && v <= (UINT64_MAX - d) / 10;
		v = v * 10 + d;
	}
	if (!ok) {
		snprintf(msg, msgsize, "since wants an event seq (a whole number), got \"%.*s\"",
			 (int)(len < 40 ? len : 40), text);
		return -EINVAL;
	}
	uint64_t seq = events_seq(ev);
	if (v > seq) {
		snprintf(msg, msgsize, "seq %" PRIu64 " has not happened yet: the last seq is %" PRIu64,
			 v, seq);
		return -EINVAL;
	}
	/* a mask of nothing reads no line: this only asks whether `after` is kept */
	struct buf none = BUF_INIT;
	uint64_t last, oldest = 0;
	int rc = events_read(ev, v, 0, 0, &none, &last, &oldest);
	buf_free(&none);
	if (rc == -ERANGE) {
		events_too_old(v, oldest, msg, msgsize);
		return -ERANGE;
	}
	*cursor = v;
	return 0;
}

void events_trace(struct events *ev, int id, struct buf *out)
{
	pthread_mutex_lock(&ev->lock);
	for (size_t i = 0; i < ev->count; i++) {
		const struct event_rec *r = &ev->ring[(ev->head + i) % ev->cap];
		if (r->worker == id && r->seq <= ev->committed)
			buf_append(out, r->line, r->len);
	}
	pthread_mutex_unlock(&ev->lock);
}

uint64_t events_lag_bytes(struct events *ev, uint64_t after)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t lag = 0;
	uint64_t first = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	if (after + 1 < first) {
		lag = UINT64_MAX;
	} else if (after < ev->committed && ev->count) {
		const struct event_rec *end = &ev->ring[(ev->head + (ev->committed - first)) % ev->cap];
		uint64_t base = after >= first ? ev->ring[(ev->head + (after - first)) % ev->cap].cum
					       : ev->ring[ev->head].cum - ev->ring[ev->head].len;
		lag = end->cum - base;
	}
	pthread_mutex_unlock(&ev->lock);
	return lag;
}

int events_read(struct events *ev, uint64_t after, unsigned mask, size_t max, struct buf *out,
		uint64_t *last, uint64_t *oldest)
{
	pthread_mutex_lock(&ev->lock);
	uint64_t first_kept = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	uint64_t committed = ev->committed;
	*last = after;
	if (after + 1 < first_kept) {
		pthread_mutex_unlock(&ev->lock);
		if (!ev->backfill) {
			*oldest = first_kept;
			return -ERANGE;
		}
		/* Older than memory: the store's log serves that part. */
		return ev->backfill(ev->backfill_arg, after, mask, max, out, last, oldest);
	}
	size_t start_len = out->len;
	for (uint64_t seq = after + 1; seq <= committed; seq++) {
		const struct event_rec *r = &ev->ring[(ev->head + (seq - first_kept)) % ev->cap];
		if (!(r->channel & mask)) {
			*last = seq;
			continue;
		}
		if (out->len > start_len && out->len + r->len > max)
			break;
		buf_append(out, r->line, r->len);
		*last = seq;
	}
	pthread_mutex_unlock(&ev->lock);
	return 0;
}
