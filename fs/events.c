/* events: the `events` file (stream.h). Readers pull committed events from the
 * one history by their own cursor, so memory does not grow with readers or
 * with how far behind they are; a read that finds nothing is parked and one
 * pump thread answers it when something matching arrives.
 *   cat /tmp/o/events &
 *   exec 3<>/tmp/o/events; printf 'since 0\nchannels dag\n' >&3; cat <&3
 *
 * Locks, in the order they nest: hub.lock (the reader list), fs_stream.lock
 * (one reader's cursor and its parked request), hub.frame_lock (the current
 * telemetry frame), then the events' and the orch's own locks. libfuse calls
 * the interrupt callback with the request's lock held, and may call it from
 * inside fuse_req_interrupt_func, so that function is only called with none
 * of ours held. */
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nodes.h"
#include "telemetry.h"

#define STREAM_PATH "events"
#define STREAM_STARTED "since and channels must come before the first read"
/* The pump rechecks for shutdown at least this often: a wake that lands just
 * before it starts waiting would otherwise be lost. */
#define HUB_IDLE_MS 250
/* Passes over the parked reads are at least this far apart: under a flood of
 * events each reader then takes several lines per read instead of waking for
 * every one (with 100 readers on 2 CPUs this doubled the events/s a writer
 * could make), while a lone event still goes out at once. */
#define HUB_PASS_GAP_NS 5000000

struct fs_stream {
	struct fs_stream *prev, *next;   /* hub.readers, under hub.lock */
	pthread_mutex_t lock;
	/* Last seq this reader has been given, or passed over by its filter. A
	 * fresh reader starts at the committed seq of its open: like `tail -f`,
	 * `cat events` shows what happens from now on; `since N` replays. */
	uint64_t cursor;
	unsigned mask;                   /* enum ev_channel bits */
	uint64_t tick;                   /* last telemetry frame given */
	bool started;                    /* a read came: since/channels are closed */
	/* A read shorter than the next line (bash's `read` asks for one byte)
	 * gets its head; the tail waits here. At most one line. */
	struct buf pend;
	size_t pend_off;
	fuse_req_t parked;               /* the one read waiting for news */
	/* The error object of a refused write: what reads on this descriptor
	 * return, then end of file, as on every control file (not a wait for
	 * events that were never asked for right). */
	struct buf error;
	size_t error_off;
	size_t parked_size;
};

struct stream_hub {
	struct orch *o;
	pthread_mutex_t lock;            /* the reader list and stopping */
	struct fs_stream *readers;
	bool stopping;
	pthread_t pump;
	int64_t period_ns;               /* between telemetry frames */

	/* The latest telemetry frame: built once per tick, copied to readers. */
	pthread_mutex_t frame_lock;
	struct buf frame;
	uint64_t frame_tick;

	/* Gauges for the telemetry frames; atomics, read without locks. */
	unsigned nreaders, nparked, ntelemetry;
	uint64_t replies, bytes;
};

/* What a reader looks like after a reply, applied only once it went out. */
struct stream_next {
	uint64_t cursor, tick;
	size_t pend_used;
};

static unsigned hub_load(const unsigned *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

static void hub_add(unsigned *v, int d)
{
	__atomic_add_fetch(v, (unsigned)d, __ATOMIC_RELAXED);
}

static bool hub_stopping(struct stream_hub *hub)
{
	return __atomic_load_n(&hub->stopping, __ATOMIC_ACQUIRE);
}

static void out_cut(struct buf *b, size_t len)
{
	b->len = len;
	if (b->data)
		b->data[len] = '\0';
}

/* Builds, with s->lock held, what a read of size bytes gets now: the tail of
 * a cut line, a telemetry frame if a newer one exists, then whole event lines.
 * out may end up longer than size only when it holds one item that alone
 * does not fit; the caller cuts it. */
static int stream_fill(struct stream_hub *hub, struct fs_stream *s, size_t size, struct buf *out,
		       struct stream_next *nx, uint64_t *oldest)
{
	nx->cursor = s->cursor;
	nx->tick = s->tick;
	nx->pend_used = 0;
	if (s->pend_off < s->pend.len) {
		size_t n = s->pend.len - s->pend_off;
		if (n > size)
			n = size;
		buf_append(out, s->pend.data + s->pend_off, n);
		nx->pend_used = n;
		if (s->pend_off + n < s->pend.len)
			return 0;
	}
	if (s->mask & EV_TELEMETRY) {
		pthread_mutex_lock(&hub->frame_lock);
		if (hub->frame_tick > s->tick && hub->frame.len &&
		    (!out->len || out->len + hub->frame.len <= size)) {
			buf_append(out, hub->frame.data, hub->frame.len);
			nx->tick = hub->frame_tick;
		}
		pthread_mutex_unlock(&hub->frame_lock);
	}
	if (!(s->mask & EV_ALL_EVENTS) || (out->len && out->len >= size))
		return 0;
	size_t base = out->len;
	uint64_t last;
	int rc = events_read(&hub->o->events, s->cursor, s->mask & EV_ALL_EVENTS, size, out, &last,
			     oldest);
	if (rc) {
		out_cut(out, base);
		/* What came before the failure still goes out; the next read fails. */
		return base ? 0 : rc;
	}
	if (base && out->len > size) {
		/* A line that does not fit behind what is there waits for the next read. */
		out_cut(out, base);
		return 0;
	}
	nx->cursor = last;
	return 0;
}

/* Applies a reply of n bytes that went out. */
static void stream_commit(struct stream_hub *hub, struct fs_stream *s, const struct stream_next *nx,
			  const struct buf *out, size_t n)
{
	s->cursor = nx->cursor;
	s->tick = nx->tick;
	s->pend_off += nx->pend_used;
	if (s->pend_off >= s->pend.len) {
		buf_free(&s->pend);
		s->pend_off = 0;
	}
	if (out->len > n) {
		/* Only a lone item is ever cut, so the pend was empty. */
		buf_append(&s->pend, out->data + n, out->len - n);
		s->pend_off = 0;
	}
	__atomic_add_fetch(&hub->replies, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&hub->bytes, n, __ATOMIC_RELAXED);
}

/* A read whose cursor fell out of the history: what its error says. It is
 * recorded (last_error, the daemon's log) and answered with none of our
 * locks held, as a slow log write would otherwise stall every reader; the
 * request is then the caller's alone (not parked, so no interrupt answers it). */
struct range_reply {
	fuse_req_t req;
	uint64_t after, oldest;
};

static void stream_range_reply(struct stream_hub *hub, const struct range_reply *r)
{
	char msg[256];
	events_too_old(r->after, r->oldest, msg, sizeof msg);
	struct buf scratch = BUF_INIT;
	node_write_error(hub->o, STREAM_PATH, ERANGE, msg, &scratch);
	buf_free(&scratch);
	fuse_reply_err(r->req, ERANGE);
}

enum try_reply { TRY_WAIT, TRY_ANSWERED, TRY_RANGE };

/* With s->lock held: answers req if there is anything to say. TRY_RANGE:
 * the caller answers it, once unlocked, with stream_range_reply(range). */
static enum try_reply stream_try_reply(struct stream_hub *hub, struct fs_stream *s, fuse_req_t req,
				       size_t size, struct buf *out, struct range_reply *range)
{
	struct stream_next nx;
	uint64_t oldest = 0;
	buf_reset(out);
	int rc = stream_fill(hub, s, size, out, &nx, &oldest);
	if (rc == -ERANGE) {
		*range = (struct range_reply){.req = req, .after = s->cursor, .oldest = oldest};
		return TRY_RANGE;
	}
	if (rc) {
		fuse_reply_err(req, -rc);
		return TRY_ANSWERED;
	}
	if (!out->len) {
		/* Events the filter passed over cost nothing to skip again, but
		 * rescanning them on every wake would: move past them. */
		s->cursor = nx.cursor;
		return TRY_WAIT;
	}
	size_t n = out->len < size ? out->len : size;
	/* A failed reply (the request is gone) leaves the reader as it was. */
	if (fuse_reply_buf(req, out->data, n) == 0)
		stream_commit(hub, s, &nx, out, n);
	return TRY_ANSWERED;
}

/* libfuse calls this with req's lock held, possibly from inside
 * fuse_req_interrupt_func, and possibly while the pump answers the same
 * request: only the reader holding req as its parked read may answer it. */
static void hub_interrupted(fuse_req_t req, void *arg)
{
	struct stream_hub *hub = arg;
	pthread_mutex_lock(&hub->lock);
	for (struct fs_stream *s = hub->readers; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		bool mine = s->parked == req;
		if (mine) {
			s->parked = NULL;
			hub_add(&hub->nparked, -1);
			fuse_reply_err(req, EINTR);
		}
		pthread_mutex_unlock(&s->lock);
		if (mine)
			break;
	}
	pthread_mutex_unlock(&hub->lock);
}

static void hub_build_frame(struct stream_hub *hub)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "channel", "telemetry");
	json_add_time(root, "ts", time_now_ms());
	cJSON *data = tm_json(hub->o->tm);
	cJSON *gauges = cJSON_AddObjectToObject(data, "events_file");
	cJSON_AddNumberToObject(gauges, "readers", hub_load(&hub->nreaders));
	cJSON_AddNumberToObject(gauges, "parked_reads", hub_load(&hub->nparked));
	cJSON_AddNumberToObject(gauges, "telemetry_readers", hub_load(&hub->ntelemetry));
	json_add_i64(gauges, "replies", (int64_t)__atomic_load_n(&hub->replies, __ATOMIC_RELAXED));
	json_add_i64(gauges, "bytes", (int64_t)__atomic_load_n(&hub->bytes, __ATOMIC_RELAXED));
	cJSON_AddItemToObject(root, "data", data);
	struct buf line = BUF_INIT;
	json_emit(root, &line);
	pthread_mutex_lock(&hub->frame_lock);
	buf_free(&hub->frame);
	hub->frame = line;
	hub->frame_tick++;
	pthread_mutex_unlock(&hub->frame_lock);
}

/* Offers every parked read what has come since its cursor. */
static void hub_pass(struct stream_hub *hub, struct buf *scratch)
{
	struct range_reply *ranges = NULL;
	size_t nranges = 0;
	pthread_mutex_lock(&hub->lock);
	for (struct fs_stream *s = hub->readers; s; s = s->next) {
		pthread_mutex_lock(&s->lock);
		struct range_reply r;
		enum try_reply t = s->parked ? stream_try_reply(hub, s, s->parked, s->parked_size,
								 scratch, &r)
					     : TRY_WAIT;
		if (t != TRY_WAIT) {
			s->parked = NULL;
			hub_add(&hub->nparked, -1);
		}
		if (t == TRY_RANGE) {
			ranges = xrealloc(ranges, (nranges + 1) * sizeof *ranges);
			ranges[nranges++] = r;
		}
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_unlock(&hub->lock);
	for (size_t i = 0; i < nranges; i++)
		stream_range_reply(hub, &ranges[i]);
	free(ranges);
}

static void *hub_pump(void *arg)
{
	struct stream_hub *hub = arg;
	struct events *ev = &hub->o->events;
	pthread_setname_np(pthread_self(), "orchfs-events");
	struct buf scratch = BUF_INIT;
	uint64_t seen = events_committed(ev);
	int64_t next_tick = 0, last_pass = 0;
	while (!hub_stopping(hub)) {
		bool fresh = false;
		bool telemetry = hub_load(&hub->ntelemetry) > 0;
		int64_t now = time_mono_ns();
		if (telemetry && now >= next_tick) {
			hub_build_frame(hub);
			fresh = true;
			/* Keep the cadence, but never try to catch up on missed ticks. */
			next_tick = next_tick + hub->period_ns > now ? next_tick + hub->period_ns
								      : now + hub->period_ns;
		}
		uint64_t committed = events_committed(ev);
		if (committed != seen || fresh) {
			int64_t wait_ns = last_pass + HUB_PASS_GAP_NS - time_mono_ns();
			if (!fresh && wait_ns > 0) {   /* frames keep --telemetry-hz */
				struct timespec ts = {0, (long)wait_ns};
				nanosleep(&ts, NULL);
				committed = events_committed(ev);
			}
			seen = committed;
			last_pass = time_mono_ns();
			hub_pass(hub, &scratch);
		}
		int timeout = HUB_IDLE_MS;
		if (telemetry) {
			int64_t ms = (next_tick - time_mono_ns() + 999999) / 1000000;
			timeout = ms < 1 ? 1 : ms < HUB_IDLE_MS ? (int)ms : HUB_IDLE_MS;
		}
		events_wait(ev, seen, timeout);
	}
	buf_free(&scratch);
	return NULL;
}

struct stream_hub *stream_hub_start(struct orch *o)
{
	struct stream_hub *hub = xcalloc(1, sizeof *hub);
	hub->o = o;
	pthread_mutex_init(&hub->lock, NULL);
	pthread_mutex_init(&hub->frame_lock, NULL);
	int hz = o->cfg.telemetry_hz > 0 ? o->cfg.telemetry_hz : 10;
	hub->period_ns = 1000000000 / hz;
	/* The pump takes no signals, so SIGINT/SIGTERM reach a thread that ends
	 * the session loop. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&hub->pump, NULL, hub_pump, hub);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		orch_log(o, ORCH_LOG_ERROR, "cannot start the events pump: %s", strerror(rc));
		pthread_mutex_destroy(&hub->frame_lock);
		pthread_mutex_destroy(&hub->lock);
		free(hub);
		return NULL;
	}
	return hub;
}

static void stream_free(struct fs_stream *s)
{
	buf_free(&s->pend);
	buf_free(&s->error);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void stream_hub_stop(struct stream_hub *hub)
{
	if (!hub)
		return;
	pthread_mutex_lock(&hub->lock);
	__atomic_store_n(&hub->stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&hub->lock);
	events_wake_all(&hub->o->events);
	pthread_join(hub->pump, NULL);
	/* The session loop has ended: no handler runs any more, so the readers
	 * left open (their files are never released now) go with the hub. */
	pthread_mutex_lock(&hub->lock);
	struct fs_stream *s = hub->readers;
	hub->readers = NULL;
	pthread_mutex_unlock(&hub->lock);
	while (s) {
		struct fs_stream *next = s->next;
		pthread_mutex_lock(&s->lock);
		if (s->parked)
			fuse_reply_buf(s->parked, NULL, 0);
		s->parked = NULL;
		pthread_mutex_unlock(&s->lock);
		stream_free(s);
		s = next;
	}
	buf_free(&hub->frame);
	pthread_mutex_destroy(&hub->frame_lock);
	pthread_mutex_destroy(&hub->lock);
	free(hub);
}

struct fs_stream *stream_open(struct stream_hub *hub)
{
	if (!hub)
		return NULL;
	struct fs_stream *s = xcalloc(1, sizeof *s);
	pthread_mutex_init(&s->lock, NULL);
	s->mask = EV_ALL_EVENTS;
	s->cursor = events_committed(&hub->o->events);
	pthread_mutex_lock(&hub->lock);
	s->next = hub->readers;
	if (hub->readers)
		hub->readers->prev = s;
	hub->readers = s;
	pthread_mutex_unlock(&hub->lock);
	hub_add(&hub->nreaders, 1);
	return s;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Parses every line of one write; nothing is applied unless all are good. */
static int stream_parse(const char *data, size_t len, const char **since, size_t *since_len,
			unsigned *mask, char *msg, size_t msgsize)
{
	size_t i = 0;
	while (i < len) {
		size_t j = i;
		while (j < len && data[j] != '\n')
			j++;
		const char *p = data + i;
		size_t n = j - i;
		i = j + 1;
		while (n && is_blank(*p)) {
			p++;
			n--;
		}
		while (n && is_blank(p[n - 1]))
			n--;
		if (!n)
			continue;
		size_t w = 0;
		while (w < n && !is_blank(p[w]))
			w++;
		const char *arg = p + w;
		size_t argn = n - w;
		while (argn && is_blank(*arg)) {
			arg++;
			argn--;
		}
		if (w == 5 && !memcmp(p, "since", 5)) {
			/* checked by events_since, as SSE and WebSocket check theirs */
			*since = arg;
			*since_len = argn;
		} else if (w == 8 && !memcmp(p, "channels", 8)) {
			char bad[200];
			unsigned m = argn ? events_channel_mask(arg, argn, bad, sizeof bad) : 0;
			if (!m) {
				const char *why = argn ? bad : "channels wants names: dag,workers";
				snprintf(msg, msgsize, "%s", why);
				return -EINVAL;
			}
			*mask = m;
		} else {
			snprintf(msg, msgsize,
				 "unknown command \"%.*s\"; write \"since N\" or \"channels a,b\" "
				 "before the first read",
				 (int)(n < 40 ? n : 40), p);
			return -EINVAL;
		}
	}
	return 0;
}

int stream_write(struct stream_hub *hub, struct fs_stream *s, const char *data, size_t len,
		 struct buf *result)
{
	struct orch *o = hub->o;
	char msg[320];
	const char *since_text = NULL;
	size_t since_len = 0;
	uint64_t since = 0;
	unsigned mask = 0;
	pthread_mutex_lock(&s->lock);
	bool started = s->started;
	pthread_mutex_unlock(&s->lock);
	if (started)
		return node_write_error(o, STREAM_PATH, EBUSY, STREAM_STARTED "; open events again",
					result);
	int rc = stream_parse(data, len, &since_text, &since_len, &mask, msg, sizeof msg);
	/* fail now rather than at the first read when it is already too old */
	if (!rc && since_text)
		rc = events_since(&o->events, since_text, since_len, &since, msg, sizeof msg);
	if (rc) {
		rc = node_write_error(o, STREAM_PATH, -rc, msg, result);
		pthread_mutex_lock(&s->lock);
		buf_reset(&s->error);
		buf_append(&s->error, result->data, result->len);
		s->error_off = 0;
		pthread_mutex_unlock(&s->lock);
		return rc;
	}
	bool has_since = since_text != NULL;
	pthread_mutex_lock(&s->lock);
	buf_reset(&s->error);   /* a write that took: the stream it asked for */
	if (s->started) {
		pthread_mutex_unlock(&s->lock);
		return node_write_error(o, STREAM_PATH, EBUSY, STREAM_STARTED "; open events again",
					result);
	}
	if (has_since)
		s->cursor = since;
	bool wake = false;
	if (mask) {
		if ((mask ^ s->mask) & EV_TELEMETRY) {
			hub_add(&hub->ntelemetry, mask & EV_TELEMETRY ? 1 : -1);
			wake = mask & EV_TELEMETRY;
		}
		s->mask = mask;
		pthread_mutex_lock(&hub->frame_lock);
		s->tick = hub->frame_tick;   /* frames from now on, not a stale one */
		pthread_mutex_unlock(&hub->frame_lock);
	}
	pthread_mutex_unlock(&s->lock);
	if (wake)
		events_wake_all(&o->events);   /* the pump may be idle: frames are due now */
	buf_reset(result);
	return (int)len;
}

void stream_read(struct stream_hub *hub, struct fs_stream *s, fuse_req_t req, size_t size)
{
	struct buf out = BUF_INIT;
	struct range_reply range;
	pthread_mutex_lock(&s->lock);
	s->started = true;
	enum try_reply t = TRY_ANSWERED;
	if (s->error.len) {
		size_t n = s->error.len - s->error_off;
		n = n < size ? n : size;
		fuse_reply_buf(req, s->error.data + s->error_off, n);
		s->error_off += n;
	} else if (hub_stopping(hub) || !size) {
		fuse_reply_buf(req, NULL, 0);
	} else if (s->parked) {
		fuse_reply_err(req, EBUSY);   /* one waiting read per reader */
	} else {
		t = stream_try_reply(hub, s, req, size, &out, &range);
	}
	pthread_mutex_unlock(&s->lock);
	if (t != TRY_WAIT) {
		if (t == TRY_RANGE)
			stream_range_reply(hub, &range);
		buf_free(&out);
		return;
	}
	/* Nothing yet. The interrupt callback goes in before the pump can see req
	 * (once answered, req is freed), and it finds req only once parked: an
	 * interrupt that came before that is seen by fuse_req_interrupted below. */
	fuse_req_interrupt_func(req, hub_interrupted, hub);
	pthread_mutex_lock(&s->lock);
	if (hub_stopping(hub))
		fuse_reply_buf(req, NULL, 0);
	else if (fuse_req_interrupted(req))
		fuse_reply_err(req, EINTR);
	else if (s->parked)
		fuse_reply_err(req, EBUSY);
	else if ((t = stream_try_reply(hub, s, req, size, &out, &range)) == TRY_WAIT) {
		s->parked = req;
		s->parked_size = size;
		hub_add(&hub->nparked, 1);
	}
	pthread_mutex_unlock(&s->lock);
	if (t == TRY_RANGE)
		stream_range_reply(hub, &range);
	buf_free(&out);
}

void stream_release(struct stream_hub *hub, struct fs_stream *s)
{
	pthread_mutex_lock(&hub->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		hub->readers = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pthread_mutex_unlock(&hub->lock);
	pthread_mutex_lock(&s->lock);
	/* The kernel releases a file only after its reads are answered; this is
	 * for a request it gave up on. */
	if (s->parked) {
		fuse_reply_buf(s->parked, NULL, 0);
		hub_add(&hub->nparked, -1);
	}
	if (s->mask & EV_TELEMETRY)
		hub_add(&hub->ntelemetry, -1);
	pthread_mutex_unlock(&s->lock);
	hub_add(&hub->nreaders, -1);
	stream_free(s);
}
