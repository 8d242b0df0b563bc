/* ws: the WebSocket protocol "orchfs.v1" (README, "Remote: HTTP, SSE and WebSocket"), JSON text frames.
 *   {"op":"subscribe","channels":["dag"],"since":40}   -> {"seq":41,…} frames
 *   {"op":"read","path":"mma/pipeline/status","id":1}  -> {"id":1,"ok":true,"result":"running\n"}
 *   {"op":"write","path":"mma/workers/spawn","body":"sleep 1","id":2}
 * A message is answered by req_ws_message (bridge/request.h); this file
 * moves the frames. Events are read by each client from the shared history
 * at its own cursor, so a slow client holds no copies; one that lags more
 * than --ws-queue-max bytes, or more than --ws-queue-soft for
 * --ws-queue-window, is closed with 1013 and the last seq it was sent, and
 * nobody waits for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include "internal.h"
#include "request.h"

struct reply {
	struct reply *next;
	struct buf frame;       /* LWS_PRE headroom, then the message */
};

struct ws_pss {
	struct ws_pss *next;    /* the api's list of clients, for the lag check */
	struct lws *wsi;
	struct req_ws sub;
	bool cull;
	bool dropped;           /* counted in clients_dropped (once) */
	int64_t over_soft_ns;   /* since when it lags past --ws-queue-soft (0: it does not) */
	uint64_t telemetry_gen;
	struct buf rx;          /* a message arriving in fragments */
	struct reply *head, *tail;
	size_t queued;          /* bytes of replies not yet sent */
};

static struct ws_pss **list_of(struct api *a)
{
	return (struct ws_pss **)&a->ws_list;
}

static void on_message(struct lws *wsi, struct api *a, struct ws_pss *p)
{
	struct reply *r = xmalloc(sizeof *r);
	r->next = NULL;
	r->frame = (struct buf)BUF_INIT;
	buf_reserve(&r->frame, LWS_PRE + 256);
	r->frame.len = LWS_PRE;
	req_ws_message(a->o, &p->sub, p->rx.data, p->rx.len, &r->frame);
	buf_reset(&p->rx);
	if (p->tail)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	p->queued += r->frame.len - LWS_PRE;
	lws_callback_on_writable(wsi);
}

static void free_reply(struct reply *r)
{
	buf_free(&r->frame);
	free(r);
}

static void count_drop(struct api *a, struct ws_pss *p)
{
	if (!p->dropped) {
		p->dropped = true;
		a->ws_dropped++;
	}
}

static int close_lagging(struct lws *wsi, struct api *a, struct ws_pss *p)
{
	char reason[96];
	int n = snprintf(reason, sizeof reason, "too slow; last seq sent %llu",
			 (unsigned long long)p->sub.cursor);
	lws_close_reason(wsi, (enum lws_close_status)1013, (unsigned char *)reason, (size_t)n);
	count_drop(a, p);
	return -1;
}

/* Replies a client asked for (a log piece is 256 KiB) are not lag until
 * they pass this: one that asks and reads is never too slow for them. */
#define WS_REPLY_ALLOWANCE (1024 * 1024)

/* What a client has not taken: the events it was not sent, the replies past
 * the allowance, and what its socket holds unsent (a client that stops
 * reading fills the kernel's buffers, several MB on loopback, before a byte
 * of lag shows here otherwise). UINT64_MAX: it fell out of the history. */
static uint64_t lag_of(struct api *a, struct ws_pss *p)
{
	uint64_t lag = p->sub.subscribed ? events_lag_bytes(&a->o->events, p->sub.cursor) : 0;
	if (lag == UINT64_MAX)
		return lag;
	uint64_t replies = p->queued > WS_REPLY_ALLOWANCE ? p->queued - WS_REPLY_ALLOWANCE : 0;
	int unsent = 0;
	if (ioctl(lws_get_socket_fd(p->wsi), SIOCOUTQ, &unsent) < 0 || unsent < 0)
		unsent = 0;
	return lag + replies + (uint64_t)unsent;
}

/* The events waiting for a client go out together, up to this many bytes
 * of them, in one write: one that fell behind (a burst, a busy moment)
 * catches up in a few system calls instead of one per event, which is what
 * kept 100 clients at 1,000 events/s from ever catching up once behind. */
#define WS_BATCH_BYTES (32 * 1024)

/* Each line of text (lines end in '\n') as an unmasked final text frame
 * (RFC 6455, 5.2), without its '\n', appended to out; returns how many. */
static size_t ws_frame_lines(struct buf *out, const char *text, size_t len)
{
	size_t n = 0;
	buf_reserve(out, len + len / 8 + 16);   /* a header is 2 bytes for most events */
	for (const char *p = text, *end = text + len; p < end; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t size = (size_t)((nl ? nl : end) - p);
		unsigned char head[10] = {0x81};
		size_t hlen;
		if (size < 126) {
			head[1] = (unsigned char)size;
			hlen = 2;
		} else if (size <= 0xffff) {
			head[1] = 126;
			head[2] = (unsigned char)(size >> 8);
			head[3] = (unsigned char)size;
			hlen = 4;
		} else {
			head[1] = 127;
			for (int i = 0; i < 8; i++)
				head[2 + i] = (unsigned char)((uint64_t)size >> (56 - 8 * i));
			hlen = 10;
		}
		buf_append(out, head, hlen);
		buf_append(out, p, size);
		p += size + (nl != NULL);
	}
	return n;
}

static int on_writeable(struct lws *wsi, struct api *a, struct ws_pss *p)
{
	if (p->cull)
		return close_lagging(wsi, a, p);
	if (p->head) {
		struct reply *r = p->head;
		p->head = r->next;
		if (!p->head)
			p->tail = NULL;
		size_t len = r->frame.len - LWS_PRE;
		p->queued -= len;
		int w = lws_write(wsi, (unsigned char *)r->frame.data + LWS_PRE, len, LWS_WRITE_TEXT);
		free_reply(r);
		a->ws_sent++;
		if (w < 0)
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (!p->sub.subscribed)
		return 0;
	/* No lag check here: a socket that is writable is taking what it is
	 * sent, however far a burst ran ahead of this thread. The tick judges
	 * lag on choked sockets only (api_ws_check_lag). */
	struct buf lines = BUF_INIT;
	uint64_t last = p->sub.cursor, oldest;
	if (events_read(&a->o->events, p->sub.cursor, p->sub.mask & EV_ALL_EVENTS, WS_BATCH_BYTES,
			&lines, &last, &oldest) == -ERANGE) {
		buf_free(&lines);
		return close_lagging(wsi, a, p);
	}
	if (!lines.len && (p->sub.mask & EV_TELEMETRY) && p->telemetry_gen != a->telemetry_gen &&
	    a->telemetry_frame.len) {
		p->telemetry_gen = a->telemetry_gen;
		buf_append(&lines, a->telemetry_frame.data, a->telemetry_frame.len);
	}
	p->sub.cursor = last;
	int w = 0;
	if (lines.len) {
		struct buf frames = BUF_INIT;
		size_t n = ws_frame_lines(&frames, lines.data, lines.len);
		/* framed already: lws sends the bytes as they are (and keeps what
		 * the socket does not take for its next turn) */
		w = lws_write(wsi, (unsigned char *)frames.data, frames.len, LWS_WRITE_HTTP);
		a->ws_sent += n;
		buf_free(&frames);
	}
	buf_free(&lines);
	if (w < 0)
		return -1;
	if (events_committed(&a->o->events) > p->sub.cursor)
		lws_callback_on_writable(wsi);
	return 0;
}

size_t api_ws_check_lag(struct api *a, uint64_t *depths, size_t max, uint64_t *deepest)
{
	size_t n = 0;
	*deepest = 0;
	int64_t now = time_mono_ns(), window = (int64_t)a->cfg.ws_queue_window_s * 1000000000;
	for (struct ws_pss *p = *list_of(a); p; p = p->next) {
		uint64_t lag = lag_of(a, p);
		if (n < max)
			depths[n++] = lag == UINT64_MAX ? 0 : lag;
		if (lag != UINT64_MAX && lag > *deepest)
			*deepest = lag;
		if (lag <= a->cfg.ws_queue_soft)
			p->over_soft_ns = 0;
		else if (!p->over_soft_ns)
			p->over_soft_ns = now;
		/* Too slow: past the hard bound while its socket takes no more (a
		 * healthy client this thread has not caught up with yet is not),
		 * or past the soft one for the whole window. */
		bool hard = lag > a->cfg.ws_queue_max && lws_send_pipe_choked(p->wsi);
		bool soft = p->over_soft_ns && now - p->over_soft_ns >= window;
		if (p->cull || (!hard && !soft))
			continue;
		/* A stalled socket may never become writable for the close frame:
		 * it gets a moment, then is dropped. */
		p->cull = true;
		count_drop(a, p);   /* dropped now, whether or not the close frame gets out */
		lws_set_timeout(p->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
		lws_callback_on_writable(p->wsi);
	}
	return n;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		       size_t len)
{
	struct ws_pss *p = user;
	struct api *a = api_of(wsi);
	char why[300];
	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
		/* still HTTP here, so the refusal can be a real 401 or 403 */
		int worker;
		int refuse = api_admit(a, wsi, &a->cfg.ws, &worker, why, sizeof why);
		return refuse ? api_refuse_upgrade(wsi, EACCES, refuse, why) : 0;
	}
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		int worker;
		return api_admit(a, wsi, &a->cfg.ws, &worker, why, sizeof why) ? -1 : 0;
	}
	case LWS_CALLBACK_HTTP:
		/* a plain HTTP request on the WebSocket listener */
		api_refuse_upgrade(wsi, ENOENT, 404,
				   "this listener speaks WebSocket (orchfs.v1); HTTP is on the other");
		return -1;
	case LWS_CALLBACK_ESTABLISHED:
		memset(p, 0, sizeof *p);
		/* whose token: the headers are still there to say */
		if (api_admit(a, wsi, &a->cfg.ws, &p->sub.worker, why, sizeof why))
			return -1;
		p->wsi = wsi;
		p->next = *list_of(a);
		*list_of(a) = p;
		a->ws_clients++;
		__atomic_add_fetch(&a->streams, 1, __ATOMIC_SEQ_CST);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (p->rx.len + len > a->cfg.max_body) {
			static const char msg[] = "message too big";
			lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, (unsigned char *)msg,
					 sizeof msg - 1);
			return -1;
		}
		buf_append(&p->rx, in, len);
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
			on_message(wsi, a, p);
		/* one that asks without reading the answers is lagging too */
		if (p->queued > a->cfg.ws_queue_max + WS_REPLY_ALLOWANCE)
			return close_lagging(wsi, a, p);
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return on_writeable(wsi, a, p);
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		lws_callback_on_writable_all_protocol(lws_get_context(wsi), &api_ws_protocol);
		return 0;
	case LWS_CALLBACK_CLOSED:
		for (struct ws_pss **pp = list_of(a); *pp; pp = &(*pp)->next)
			if (*pp == p) {
				*pp = p->next;
				a->ws_clients--;
				__atomic_sub_fetch(&a->streams, 1, __ATOMIC_SEQ_CST);
				break;
			}
		while (p->head) {
			struct reply *r = p->head;
			p->head = r->next;
			free_reply(r);
		}
		buf_free(&p->rx);
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols api_ws_protocol = {
	"orchfs.v1", ws_callback, sizeof(struct ws_pss), 65536, 0, NULL, 0,
};
