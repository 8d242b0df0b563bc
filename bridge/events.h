/* events: every change of state as one event with the next seq, kept in a
 * bounded in-memory history; the store (when there is one) persists them and
 * serves replays older than that history.
 * An event line is {"seq":N,"ts":"...","channel":"dag","type":"task.status","data":{...}}.
 * Events become visible to readers only once committed: the store commits them
 * after the change they describe is on disk ("published after it is stored").
 * Without a store, publishing commits at once. */
#ifndef ORCHFS_EVENTS_H
#define ORCHFS_EVENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "json.h"

/* Channels as bits, for reader filters. */
enum ev_channel {
	EV_WORKERS = 1u << 0, EV_DAG = 1u << 1, EV_PIPELINE = 1u << 2, EV_CONTEXT = 1u << 3,
	EV_METRICS = 1u << 4, EV_SYSTEM = 1u << 5, EV_TELEMETRY = 1u << 6,
};
#define EV_ALL_EVENTS (EV_WORKERS | EV_DAG | EV_PIPELINE | EV_CONTEXT | EV_METRICS | EV_SYSTEM)

/* Every kind of event there is; its name and channel come from event_kinds[],
 * so a misspelt type or channel does not compile. */
enum event_kind {
	EVK_WORKER_SPAWNED, EVK_WORKER_SIGNAL, EVK_WORKER_TIMEOUT, EVK_WORKER_EXITED,
	EVK_WORKER_LOST, EVK_WORKER_ADOPTED, EVK_WORKER_RUNNER_STATE,
	EVK_TASK_STATUS, EVK_TASK_RETRY, EVK_TASK_SPAWN_FAILED, EVK_TRACK_STATUS,
	EVK_TRACK_CREATED, EVK_TASK_ADDED, EVK_TASK_REMOVED, EVK_DEP_ADDED, EVK_DEP_REMOVED,
	EVK_PIPELINE_STATUS, EVK_PIPELINE_MAX_WORKERS,
	EVK_CONTEXT_INJECTED, EVK_CONTEXT_REPLACED, EVK_CONTEXT_REMOVED,
	EVK_USAGE_REPORTED, EVK_TRACK_BUDGET,
	EVK_DAEMON_STARTED, EVK_DAEMON_STOPPING, EVK_DAEMON_STOPPED,
	EVK_TRACK_BUDGET_EXHAUSTED, EVK_TRACK_REMOVED, EVK_TRACK_ARCHIVED,
	EVK_COUNT,
	EVK_RESTORED = EVK_COUNT,   /* read back from the store: kind not kept */
};

struct event_kind_info {
	const char *name;            /* the line's "type" */
	enum ev_channel channel;
};
extern const struct event_kind_info event_kinds[EVK_COUNT];

/* The history in memory is bounded by count (--event-history) and by bytes;
 * older events are read back from the store. */
#define EVENTS_MAX_BYTES (8u << 20)

struct event_rec {
	uint64_t seq;
	unsigned channel;    /* one enum ev_channel bit */
	enum event_kind kind;
	int worker;          /* the worker the event is about (data.id or data.worker), 0 if none */
	/* The objects it names (NULL: none): what the store writes, what the
	 * notifier announces, without parsing the line back. */
	char *task, *track, *name;
	char *line;          /* serialized once, newline-terminated */
	size_t len;
	uint64_t cum;        /* bytes of every line up to this one: lag in bytes is a subtraction */
};

/* Reads kept events older than the in-memory history (the store's replay).
 * Same contract as events_read; returns -ERANGE when `after` is older than
 * anything it keeps, with *oldest set to the oldest seq it has. */
typedef int (*events_backfill_fn)(void *arg, uint64_t after, unsigned mask, size_t max,
				  struct buf *out, uint64_t *last, uint64_t *oldest);

struct events {
	pthread_mutex_t lock;
	pthread_cond_t cond;     /* broadcast when `committed` moves */
	uint64_t seq;            /* last seq published */
	uint64_t committed;      /* last seq readers may see */
	bool autocommit;         /* true until a store takes over committing */
	struct event_rec *ring;
	size_t cap, head, count;
	uint64_t published, evicted;
	size_t high_water;       /* most events held at once */
	uint64_t bytes;          /* cumulative bytes of all lines published */
	size_t held;             /* bytes of the lines in memory: at most EVENTS_MAX_BYTES */
	/* The last seq the store has taken (UINT64_MAX without a store): a later
	 * one is never evicted, the history grows instead, or it would be lost. */
	uint64_t gathered;
	/* The seq of the last event of each kind (atomic): a document that
	 * depends on some kinds is unchanged while none of theirs moved. */
	uint64_t kind_seq[EVK_COUNT];
	events_backfill_fn backfill;
	void *backfill_arg;
};

void events_init(struct events *ev, size_t capacity);
void events_destroy(struct events *ev);
/* Publishes one event; takes ownership of data (NULL = {}). The objects it
 * names are data's task, track, name (context) and worker (or id on the
 * workers channel); task and track, when data lacks them, may be given
 * (a worker's event is about its task and track too). */
uint64_t events_publish(struct events *ev, enum event_kind kind, cJSON *data, const char *task,
			const char *track);

/* A worker's trace from memory (the store keeps the whole of it): the lines
 * of the committed events about worker id. */
void events_trace(struct events *ev, int id, struct buf *out);
uint64_t events_seq(struct events *ev);
/* Oldest seq still kept in memory (seq+1 when the history is empty). */
uint64_t events_oldest(struct events *ev);

/* Restart: refill the history from the store, oldest first, then set the seq
 * counter (and the commit mark) to where the store left it. */
void events_restore(struct events *ev, uint64_t seq, unsigned channel, int worker,
		    const char *line, size_t len);
void events_restore_done(struct events *ev, uint64_t seq);

/* Readers see events up to seq once it is committed; wakes waiters. */
void events_commit(struct events *ev, uint64_t seq);
uint64_t events_committed(struct events *ev);
/* Blocks until committed > after or timeout_ms passes (-1: no timeout);
 * returns the committed seq. */
uint64_t events_wait(struct events *ev, uint64_t after, int timeout_ms);
/* Wakes every events_wait (shutdown, or an interrupted reader). */
void events_wake_all(struct events *ev);

/* Appends committed events with seq > after whose channel is in mask, as whole
 * lines, stopping before max bytes would be passed (but always at least one
 * line when there is one). *last = seq of the last line appended (after when
 * none). Falls back to the backfill for seqs older than memory. Returns 0, or
 * -ERANGE when after + 1 is older than the oldest kept event (*oldest says which). */
int events_read(struct events *ev, uint64_t after, unsigned mask, size_t max, struct buf *out,
		uint64_t *last, uint64_t *oldest);

/* Calls fn (ev.lock held: it must be quick) for each committed event in memory
 * after seq `after`, in order. Returns the last seq seen; *lost is set when
 * some after `after` are no longer in memory (they are skipped). */
uint64_t events_each(struct events *ev, uint64_t after,
		     void (*fn)(void *arg, const struct event_rec *rec), void *arg, bool *lost);

/* The one check of a reader's `since` (the events file, SSE and WebSocket):
 * text is a decimal seq; the reader's cursor becomes it. -EINVAL when it is
 * not a seq or has not happened yet, -ERANGE when it is older than anything
 * kept (memory or store); msg says which, in the same words everywhere. */
int events_since(struct events *ev, const char *text, size_t len, uint64_t *cursor, char *msg,
		 size_t msgsize);

/* The message for a reader whose cursor fell behind the oldest kept event. */
void events_too_old(uint64_t after, uint64_t oldest, char *msg, size_t msgsize);

/* Bytes of the committed events after seq `after` (all channels): how far a
 * reader lags. UINT64_MAX when `after` is older than memory. */
uint64_t events_lag_bytes(struct events *ev, uint64_t after);

/* "workers,dag" -> mask; 0 and an error message for an unknown name. */
unsigned events_channel_mask(const char *list, size_t len, char *bad, size_t badsize);
unsigned events_channel_bit(const char *name);
const char *events_channel_name(unsigned bit);

#endif
