/* ws: the WebSocket protocol "orchfs.v1" (README, "Remote: HTTP, SSE and WebSocket"), JSON text frames.
 *   {"op":"subscribe","channels":["dag"],"since":40}   -> {"seq":41,…} frames
 *   {"op":"read","path":"mma/pipeline/status","id":1}  -> {"id":1,"ok":true,"result":"running\n"}
 *   {"op":"write","path":"mma/workers/spawn","body":"sleep 1","id":2}
 * Events are read by each client from the shared history at its own cursor,
 * so a slow client holds no copies; one that lags more than --ws-queue-max
 * bytes is closed with 1013 and the last seq it was sent, and nobody waits
 * for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "nodes.h"

struct reply {
	struct reply *next;
	size_t len;
	unsigned char data[];   /* LWS_PRE headroom, then the frame */
};

struct ws_pss {
	struct ws_pss *next;    /* the api's list of clients, for the lag check */
	struct lws *wsi;
	bool subscribed, cull;
	bool dropped;           /* counted in clients_dropped (once) */
	unsigned mask;
	uint64_t cursor;        /* last seq sent */
	uint64_t telemetry_gen;
	struct buf rx;          /* a message arriving in fragments */
	struct reply *head, *tail;
	size_t queued;          /* bytes of replies not yet sent */
};

static struct ws_pss **list_of(struct api *a)
{
	return (struct ws_pss **)&a->ws_list;
}

static void queue_reply(struct lws *wsi, struct ws_pss *p, cJSON *doc)
{
	struct buf text = BUF_INIT;
	json_write(&text, doc);
	cJSON_Delete(doc);
	size_t len = text.len;
	struct reply *r = xmalloc(sizeof *r + LWS_PRE + len);
	r->next = NULL;
	r->len = len;
	memcpy(r->data + LWS_PRE, text.data, len);
	buf_free(&text);
	if (p->tail)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	p->queued += len;
	lws_callback_on_writable(wsi);
}

static cJSON *reply_doc(const cJSON *id, bool ok)
{
	cJSON *d = cJSON_CreateObject();
	if (id)
		cJSON_AddItemToObject(d, "id", cJSON_Duplicate(id, 1));
	cJSON_AddBoolToObject(d, "ok", ok);
	return d;
}

/* The error object's inside, {"status","errno","message","path"}, from a rendered one. */
static cJSON *error_inner(const char *rendered)
{
	cJSON *e = cJSON_Parse(rendered);
	cJSON *inner = cJSON_DetachItemFromObject(e, "error");
	cJSON_Delete(e);
	return inner ? inner : cJSON_CreateObject();
}

static void reply_error(struct lws *wsi, struct ws_pss *p, const cJSON *id, int errnum,
			const char *path, const char *message)
{
	struct orch_err err;
	struct buf b = BUF_INIT;
	err_set(&err, errnum, "%s", message);
	err_render(&err, path, &b);
	cJSON *d = reply_doc(id, false);
	cJSON_AddItemToObject(d, "error", error_inner(b.data));
	buf_free(&b);
	queue_reply(wsi, p, d);
}

static unsigned channels_of(const cJSON *arr, char *bad, size_t badsize)
{
	if (!arr)
		return EV_ALL_EVENTS;
	if (!cJSON_IsArray(arr)) {
		snprintf(bad, badsize, "\"channels\" must be an array of channel names");
		return 0;
	}
	unsigned mask = 0;
	const cJSON *c;
	cJSON_ArrayForEach(c, arr) {
		unsigned bit = cJSON_IsString(c) ? events_channel_bit(c->valuestring) : 0;
		if (!bit) {
			snprintf(bad, badsize, "unknown channel %s; channels are workers, dag, pipeline, "
					       "context, metrics, system, telemetry",
				 cJSON_IsString(c) ? c->valuestring : "(not a string)");
			return 0;
		}
		mask |= bit;
	}
	return mask;
}

static void op_subscribe(struct lws *wsi, struct api *a, struct ws_pss *p, const cJSON *msg,
			 const cJSON *id, bool subscribe)
{
	char bad[200];
	unsigned mask = channels_of(cJSON_GetObjectItemCaseSensitive(msg, "channels"), bad, sizeof bad);
	if (!mask) {
		reply_error(wsi, p, id, EINVAL, "", bad);
		return;
	}
	if (!subscribe) {
		p->mask &= ~mask;
		p->subscribed = p->mask != 0;
	} else {
		const cJSON *since = cJSON_GetObjectItemCaseSensitive(msg, "since");
		int64_t v = -1;
		char text[32] = "", m[200];
		/* a JSON number, else its text: events_since says what is wrong */
		if (since && json_int(since, 0, INT64_MAX / 2, &v))
			snprintf(text, sizeof text, "%lld", (long long)v);
		else if (since)
			snprintf(text, sizeof text, "%s", cJSON_IsString(since) ? since->valuestring : "?");
		int rc = since ? events_since(&a->o->events, text, strlen(text), &p->cursor, m, sizeof m)
			       : 0;
		if (rc) {
			reply_error(wsi, p, id, -rc, "", m);
			return;
		}
		if (!since && !p->subscribed) {
			p->cursor = events_committed(&a->o->events);
		}
		p->mask |= mask;
		p->subscribed = true;
	}
	cJSON *d = reply_doc(id, true);
	cJSON *r = cJSON_AddObjectToObject(d, "result");
	json_add_i64(r, "seq", (int64_t)p->cursor);
	cJSON *chans = cJSON_AddArrayToObject(r, "channels");
	for (unsigned bit = 1; bit <= EV_TELEMETRY; bit <<= 1)
		if (p->mask & bit)
			cJSON_AddItemToArray(chans, cJSON_CreateString(events_channel_name(bit)));
	queue_reply(wsi, p, d);
}

/* A worker's log is read a piece at a time: {"op":"read","path":P,"offset":N}
 * answers at most WS_LOG_PIECE bytes from N (0 by default) as "result", the
 * log's "size" now, and "next", the offset to ask for, while there is more.
 * A piece ends on a whole UTF-8 character where the bytes allow it. */
#define WS_LOG_PIECE (256 * 1024)

static void read_log_piece(struct lws *wsi, struct ws_pss *p, const cJSON *msg, const cJSON *id,
			   const char *path, int fd, size_t size)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(msg, "offset");
	int64_t offset = 0;
	if (o && (!json_int(o, 0, INT64_MAX / 2, &offset) || (uint64_t)offset > size)) {
		close(fd);
		char why[96];
		snprintf(why, sizeof why, "\"offset\" must be a whole number 0..%zu (the log's size)",
			 size);
		reply_error(wsi, p, id, EINVAL, path, why);
		return;
	}
	size_t want = size - (size_t)offset < WS_LOG_PIECE ? size - (size_t)offset : WS_LOG_PIECE;
	char *piece = xmalloc(want + 1);
	ssize_t got = pread(fd, piece, want, (off_t)offset);
	close(fd);
	size_t n = got > 0 ? (size_t)got : 0;
	/* back off over a character cut in two (at most 3 bytes of it) */
	if ((size_t)offset + n < size)
		for (size_t back = 1; back <= 3 && back <= n; back++) {
			unsigned char c = (unsigned char)piece[n - back];
			if ((c & 0xC0) == 0x80)
				continue;   /* a continuation byte: look further back */
			size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
			if (need > back)
				n -= back;
			break;
		}
	piece[n] = '\0';
	cJSON *d = reply_doc(id, true);
	cJSON_AddItemToObject(d, "result", cJSON_CreateString(piece));
	json_add_i64(d, "offset", offset);
	json_add_i64(d, "size", (int64_t)size);
	if ((size_t)offset + n < size)
		json_add_i64(d, "next", offset + (int64_t)n);
	free(piece);
	queue_reply(wsi, p, d);
}

static void op_read_write(struct lws *wsi, struct api *a, struct ws_pss *p, const cJSON *msg,
			  const cJSON *id, bool write)
{
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(msg, "path");
	if (!cJSON_IsString(path)) {
		reply_error(wsi, p, id, EINVAL, "", "\"path\" is required (a string)");
		return;
	}
	struct buf out = BUF_INIT;
	int rc;
	bool is_json = true;
	if (write) {
		const cJSON *body = cJSON_GetObjectItemCaseSensitive(msg, "body");
		char *text = NULL;
		if (cJSON_IsString(body))
			text = xstrdup(body->valuestring);
		else if (body) {   /* a JSON body may come as JSON itself */
			struct buf b = BUF_INIT;
			json_write(&b, body);
			text = buf_steal(&b);
		}
		if (!text) {
			reply_error(wsi, p, id, EINVAL, path->valuestring, "\"body\" is required");
			return;
		}
		rc = api_write(a, path->valuestring, text, strlen(text), &out);
		free(text);
	} else {
		struct api_log log;
		rc = api_read(a, path->valuestring, &out, &is_json, &log);
		if (log.fd >= 0) {
			read_log_piece(wsi, p, msg, id, path->valuestring, log.fd, log.len);
			return;
		}
	}
	cJSON *d = reply_doc(id, rc == 0);
	if (rc) {
		cJSON_AddItemToObject(d, "error", error_inner(out.data));
	} else {
		cJSON *result = is_json ? cJSON_ParseWithLength(out.data, out.len) : NULL;
		cJSON_AddItemToObject(d, "result", result ? result : cJSON_CreateString(out.data ? out.data : ""));
	}
	buf_free(&out);
	queue_reply(wsi, p, d);
}

/* cJSON ends a string at \u0000, so a message holding one is refused whole;
 * a write's refusal is the file's, in last_error, as on the mount. */
static void refuse_nul(struct lws *wsi, struct api *a, struct ws_pss *p, const cJSON *msg,
		       const cJSON *id, bool write)
{
	static const char why[] = "a string holds \\u0000: NUL is refused";
	const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "path"));
	if (!write || !path) {
		reply_error(wsi, p, id, EINVAL, path ? path : "", why);
		return;
	}
	struct buf out = BUF_INIT;
	node_write_error(a->o, path, EINVAL, why, &out);
	cJSON *d = reply_doc(id, false);
	cJSON_AddItemToObject(d, "error", error_inner(out.data));
	buf_free(&out);
	queue_reply(wsi, p, d);
}

static void on_message(struct lws *wsi, struct api *a, struct ws_pss *p)
{
	cJSON *msg = cJSON_ParseWithLength(p->rx.data, p->rx.len);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "op"));
	if (!cJSON_IsObject(msg))
		reply_error(wsi, p, NULL, EINVAL, "", "a message is one JSON object with \"op\"");
	else if (!op)
		reply_error(wsi, p, id, EINVAL, "", "\"op\" is required");
	else if (!strcmp(op, "subscribe") || !strcmp(op, "unsubscribe"))
		op_subscribe(wsi, a, p, msg, id, !strcmp(op, "subscribe"));
	else if (json_nul_escape(p->rx.data, p->rx.len) < p->rx.len)
		refuse_nul(wsi, a, p, msg, id, !strcmp(op, "write"));
	else if (!strcmp(op, "read") || !strcmp(op, "write"))
		op_read_write(wsi, a, p, msg, id, !strcmp(op, "write"));
	else
		reply_error(wsi, p, id, EINVAL, "", "unknown op; ops are subscribe, unsubscribe, read, write");
	cJSON_Delete(msg);
	buf_reset(&p->rx);
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
			 (unsigned long long)p->cursor);
	lws_close_reason(wsi, (enum lws_close_status)1013, (unsigned char *)reason, (size_t)n);
	count_drop(a, p);
	return -1;
}

/* Replies a client asked for (a log piece is 256 KiB) are not lag until
 * they pass this: one that asks and reads is never too slow for them. */
#define WS_REPLY_ALLOWANCE (1024 * 1024)

static uint64_t lag_of(struct api *a, struct ws_pss *p)
{
	uint64_t lag = p->subscribed ? events_lag_bytes(&a->o->events, p->cursor) : 0;
	uint64_t replies = p->queued > WS_REPLY_ALLOWANCE ? p->queued - WS_REPLY_ALLOWANCE : 0;
	return lag == UINT64_MAX ? lag : lag + replies;
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
		p->queued -= r->len;
		int w = lws_write(wsi, r->data + LWS_PRE, r->len, LWS_WRITE_TEXT);
		free(r);
		a->ws_sent++;
		if (w < 0)
			return -1;
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (!p->subscribed)
		return 0;
	uint64_t lag = lag_of(a, p);
	if (lag > a->ws_max_queue && lag != UINT64_MAX)
		a->ws_max_queue = lag;
	/* No lag check here: a socket that is writable is taking what it is
	 * sent, however far a burst ran ahead of this thread. The tick judges
	 * lag on choked sockets only (api_ws_check_lag). */
	struct buf frame = BUF_INIT;
	buf_reserve(&frame, LWS_PRE + 512);
	frame.len = LWS_PRE;
	uint64_t last = p->cursor, oldest;
	/* one event a frame: max 1 still yields one whole line */
	if (events_read(&a->o->events, p->cursor, p->mask & EV_ALL_EVENTS, 1, &frame, &last,
			&oldest) == -ERANGE) {
		buf_free(&frame);
		return close_lagging(wsi, a, p);
	}
	if (frame.len == LWS_PRE && (p->mask & EV_TELEMETRY) && p->telemetry_gen != a->telemetry_gen &&
	    a->telemetry_frame.len) {
		p->telemetry_gen = a->telemetry_gen;
		buf_append(&frame, a->telemetry_frame.data, a->telemetry_frame.len);
	}
	p->cursor = last;
	int w = 0;
	if (frame.len > LWS_PRE) {
		size_t len = frame.len - LWS_PRE;
		if (frame.data[frame.len - 1] == '\n')
			len--;
		w = lws_write(wsi, (unsigned char *)frame.data + LWS_PRE, len, LWS_WRITE_TEXT);
		a->ws_sent++;
	}
	buf_free(&frame);
	if (w < 0)
		return -1;
	if (events_committed(&a->o->events) > p->cursor)
		lws_callback_on_writable(wsi);
	return 0;
}

size_t api_ws_check_lag(struct api *a, uint64_t *depths, size_t max)
{
	size_t n = 0;
	for (struct ws_pss *p = *list_of(a); p; p = p->next) {
		uint64_t lag = lag_of(a, p);
		if (n < max)
			depths[n++] = lag == UINT64_MAX ? 0 : lag;
		/* Too slow is lagging while its socket takes no more: a healthy
		 * client that this thread has not caught up with yet is not. */
		if (p->cull || lag <= a->cfg.ws_queue_max || !lws_send_pipe_choked(p->wsi))
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
		int refuse = api_admit(a, wsi, &a->cfg.ws, true, why, sizeof why);
		return refuse ? api_refuse_upgrade(wsi, EACCES, refuse, why) : 0;
	}
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return api_admit(a, wsi, &a->cfg.ws, true, why, sizeof why) ? -1 : 0;
	case LWS_CALLBACK_HTTP:
		/* a plain HTTP request on the WebSocket listener */
		api_refuse_upgrade(wsi, ENOENT, 404,
				   "this listener speaks WebSocket (orchfs.v1); HTTP is on the other");
		return -1;
	case LWS_CALLBACK_ESTABLISHED:
		memset(p, 0, sizeof *p);
		p->wsi = wsi;
		p->next = *list_of(a);
		*list_of(a) = p;
		a->ws_clients++;
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
				break;
			}
		while (p->head) {
			struct reply *r = p->head;
			p->head = r->next;
			free(r);
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
