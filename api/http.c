/* http: GET and POST on /api/P, and the Server-Sent Events stream.
 *   curl -H "Authorization: Bearer $T" 127.0.0.1:8999/api/mma/pipeline/status
 *   curl -H "Authorization: Bearer $T" -X POST --data-binary 'freeze' 127.0.0.1:8999/api/mma/pipeline/pause
 *   curl -N -H "Authorization: Bearer $T" '127.0.0.1:8999/api/events?since=10&channels=dag'
 * A document is sent from the render cache's own copy (shared, no copy per
 * request), a worker's log from its file (as long as it was at the request),
 * anything else (a listing, an error object) as rendered; in pieces of 64 KiB,
 * as many per WRITEABLE callback as the socket takes, the headers with the
 * first (a small document is one write). Each piece is made in the service
 * thread's one buffer (lws keeps what the socket did not take), so a
 * response of any size, on any number of connections, costs no memory of
 * its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "nodes.h"
#include "request.h"
#include "telemetry.h"

#define CHUNK 65536
#define HEADER_ROOM 1024   /* the headers, in front of the body's first piece */
#define HTTP_TURN CHUNK   /* a response's bytes a turn of the service thread */
/* A response's client that takes nothing for this long is dropped (nginx's
 * send_timeout); one that takes it slowly gets all of it, however long. */
#define HTTP_SEND_STALL_S 60

enum method { M_OTHER, M_GET, M_POST, M_OPTIONS };

struct http_pss {
	enum method method;
	int worker;                /* whose token (req_admit): N > 0 may report N's usage only */
	char path[1024];
	struct buf body;
	size_t content_length;
	/* the response */
	int status;
	const char *ctype;
	struct buf resp;           /* a rendered answer (a listing, an error object) */
	struct req_body doc;       /* or a document, shared, or a log's file */
	size_t sent;               /* counted from the file's start, as is base */
	size_t base;               /* a log asked from ?offset=N on */
	bool headers_sent, responding, close_after;
	bool draining;             /* answered and closing: what the client still sends is dropped */
	bool started;              /* a request came: the fields above are its (lws zeroes them first) */
	char cors[256];            /* an --allow-origin Origin to name in the answer, or "" */
	/* an event stream */
	bool sse;
	uint64_t cursor;
	unsigned mask;
	uint64_t telemetry_gen;
	int64_t last_write_ns;
};

/* What the last request kept: its body, its answer. */
static void request_done(struct api *a, struct http_pss *p)
{
	if (!p->started)
		return;
	if (p->sse)
		__atomic_sub_fetch(&a->streams, 1, __ATOMIC_SEQ_CST);
	p->sse = false;
	buf_free(&p->body);
	buf_free(&p->resp);
	req_body_done(&p->doc);
}

static void respond(struct lws *wsi, struct http_pss *p, int status, const char *ctype)
{
	p->status = status;
	p->ctype = ctype;
	p->responding = true;
	tm_http(api_of(wsi)->o->tm, status >= 400);
	lws_callback_on_writable(wsi);
}

static void respond_error(struct lws *wsi, struct http_pss *p, int errnum, int status,
			  const char *message)
{
	struct orch_err err;
	err_set(&err, errnum, "%s", message);
	if (!status)
		status = err_http_status(errnum);
	buf_reset(&p->resp);
	err_render_status(&err, p->path, status, &p->resp);
	respond(wsi, p, status, "application/json");
}

static int header_copy(struct lws *wsi, enum lws_token_indexes tok, char *out, size_t size)
{
	int n = lws_hdr_total_length(wsi, tok);
	if (n <= 0 || (size_t)n >= size)
		return -1;
	return lws_hdr_copy(wsi, out, (int)size, tok);
}

static void start_sse(struct lws *wsi, struct api *a, struct http_pss *p)
{
	char channels[256], since[256], last_id[32], why[200];
	bool has_last_id = lws_hdr_custom_length(wsi, "last-event-id:", 14) > 0 &&
			   lws_hdr_custom_copy(wsi, last_id, sizeof last_id, "last-event-id:", 14) > 0;
	int rc = req_stream_open(&a->o->events,
				 lws_get_urlarg_by_name(wsi, "channels=", channels, sizeof channels),
				 lws_get_urlarg_by_name(wsi, "since=", since, sizeof since),
				 has_last_id ? last_id : NULL, &p->mask, &p->cursor, why, sizeof why);
	if (rc) {
		respond_error(wsi, p, -rc, 0, why);
		return;
	}
	p->sse = true;
	__atomic_add_fetch(&a->streams, 1, __ATOMIC_SEQ_CST);
	p->status = 200;
	p->responding = true;
	tm_http(a->o->tm, 0);
	lws_callback_on_writable(wsi);
}

/* A path outside /api/: the dashboard's files (web.c), without the token. */
static int on_page(struct lws *wsi, struct api *a, struct http_pss *p, const char *uri)
{
	char why[300];
	int refuse = api_admit_page(a, wsi, why, sizeof why);
	if (refuse) {
		respond_error(wsi, p, EACCES, refuse, why);
		return 0;
	}
	if (p->method != M_GET) {
		p->close_after = true;   /* a body, if any, is not read */
		respond_error(wsi, p, ENOTSUP, 405, "the dashboard's files take GET only");
		return 0;
	}
	if (a->cfg.web_root && strcmp(uri, "/config.json") == 0) {
		web_config(a, &p->resp);
		respond(wsi, p, 200, "application/json");
		return 0;
	}
	if (web_open(a->cfg.web_root, uri, &p->doc.fd, &p->doc.len)) {
		respond_error(wsi, p, ENOENT, 0,
			      a->cfg.web_root ? "not found (the namespace is under /api/)"
					      : "not found: the namespace is under /api/ (no dashboard: "
						"see --web-root)");
		return 0;
	}
	respond(wsi, p, 200, web_content_type(uri[0] && uri[1] ? uri : "/index.html"));
	return 0;
}

static int on_http(struct lws *wsi, struct api *a, struct http_pss *p, const char *uri)
{
	char why[300];
	/* a kept-alive connection reuses its session for the next request */
	request_done(a, p);
	memset(p, 0, sizeof *p);
	p->doc.fd = -1;
	p->started = true;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
		p->method = M_GET;
	else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
		p->method = M_POST;
	else if (lws_hdr_total_length(wsi, WSI_TOKEN_OPTIONS_URI) > 0)   /* meson checks lws has it */
		p->method = M_OPTIONS;
	snprintf(p->path, sizeof p->path, "%s", strncmp(uri, "/api/", 5) == 0 ? uri + 5 : uri);
	api_cors_origin(a, wsi, p->cors, sizeof p->cors);
	if (p->method == M_OPTIONS) {
		/* a browser's preflight comes without the token: Host and Origin decide */
		int refuse = api_preflight(a, wsi, why, sizeof why);
		if (refuse)
			respond_error(wsi, p, EACCES, refuse, why);
		else
			respond(wsi, p, 204, NULL);
		return 0;
	}

	if (strncmp(uri, "/api/", 5) != 0 && strcmp(uri, "/api") != 0)
		return on_page(wsi, a, p, uri);
	int refuse = api_admit(a, wsi, &a->cfg.http, &p->worker, why, sizeof why);
	if (refuse) {
		respond_error(wsi, p, EACCES, refuse, why);
		return 0;
	}
	if (strncmp(uri, "/api/", 5) != 0) {
		respond_error(wsi, p, ENOENT, 0, "not found: the namespace is under /api/");
		return 0;
	}
	if (p->method == M_OTHER) {
		respond_error(wsi, p, ENOTSUP, 405, "only GET and POST");
		return 0;
	}
	if (p->method == M_GET) {
		if (strcmp(p->path, "events") == 0) {
			start_sse(wsi, a, p);
			return 0;
		}
		bool is_json;
		int rc = req_read(a->o, p->path, &p->resp, &is_json, &p->doc);
		if (rc) {
			respond(wsi, p, req_status_of(&p->resp), "application/json");
			return 0;
		}
		char arg[40];
		const char *offset = lws_get_urlarg_by_name(wsi, "offset=", arg, sizeof arg);
		if (offset) {
			/* the rest of a log from where a follower got to */
			char *end;
			errno = 0;
			unsigned long long n = strtoull(offset, &end, 10);
			if (p->doc.fd < 0 || errno || end == offset || *end || offset[0] == '-') {
				bool log = p->doc.fd >= 0;
				req_body_done(&p->doc);   /* the error object is the answer */
				respond_error(wsi, p, EINVAL, 0,
					      !log ? "offset= is for a worker's log"
							    : "offset wants a whole number of bytes");
				return 0;
			}
			p->sent = p->base = n < p->doc.len ? (size_t)n : p->doc.len;
		}
		respond(wsi, p, 200, is_json ? "application/json" : "text/plain; charset=utf-8");
		return 0;
	}
	/* POST: the size is known before a byte of the body is read. A body
	 * framed two ways (Content-Length and chunked) is how requests are
	 * smuggled past a proxy: one framing, Content-Length, and nothing else. */
	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
		p->close_after = true;
		respond_error(wsi, p, EINVAL, 400,
			      "Transfer-Encoding is refused: send the body with Content-Length");
		return 0;
	}
	char cl[32];
	if (header_copy(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl) < 0) {
		p->close_after = true;
		respond_error(wsi, p, EINVAL, 411, "Content-Length is required");
		return 0;
	}
	unsigned long long n;
	if (!req_content_length(cl, &n)) {
		p->close_after = true;
		respond_error(wsi, p, EINVAL, 400, "bad Content-Length");
		return 0;
	}
	if (n > a->cfg.max_body) {
		char msg[128];
		snprintf(msg, sizeof msg, "a body of %llu bytes is over the limit of %zu", n,
			 a->cfg.max_body);
		p->close_after = true;   /* its body is never read */
		struct node target;
		if (node_resolve(a->o, p->path, &target) == 0 && (node_flags(&target) & NODE_CTL)) {
			/* a failed write like the mount's EFBIG: last_error holds it too */
			buf_reset(&p->resp);
			node_write_error(a->o, p->path, EFBIG, msg, &p->resp);
			respond(wsi, p, 413, "application/json");
		} else {
			respond_error(wsi, p, EFBIG, 0, msg);
		}
		return 0;
	}
	p->content_length = (size_t)n;
	if (n == 0) {
		int rc = req_write(a->o, p->worker, p->path, "", 0, &p->resp);
		respond(wsi, p, rc ? req_status_of(&p->resp) : 200, "application/json");
	}
	return 0;
}

static int add_header(struct lws *wsi, const char *name, const char *value, unsigned char **q,
		      unsigned char *end)
{
	return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
					   (const unsigned char *)value, (int)strlen(value), q, end);
}

/* For a page of --allow-origin: it may read the answer (errors too, so it
 * can tell a bad token from a down server), and a preflight says what may
 * follow. A cache must not hand one page's answer to another: Vary. */
static int add_cors_headers(struct lws *wsi, const struct http_pss *p, unsigned char **q,
			    unsigned char *end)
{
	if (!p->cors[0])
		return 0;
	return add_header(wsi, "access-control-allow-origin:", p->cors, q, end) ||
	       add_header(wsi, "vary:", "Origin", q, end) ||
	       (p->method == M_OPTIONS &&
		(add_header(wsi, "access-control-allow-methods:", REQ_CORS_METHODS, q, end) ||
		 add_header(wsi, "access-control-allow-headers:", REQ_CORS_HEADERS, q, end) ||
		 add_header(wsi, "access-control-max-age:", "600", q, end)));
}

/* An event stream's headers, alone: its body comes as events do. */
static int write_sse_headers(struct lws *wsi, const struct http_pss *p)
{
	unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *q = start, *end = buf + sizeof buf;
	if (lws_add_http_common_headers(wsi, 200, "text/event-stream", LWS_ILLEGAL_HTTP_CONTENT_LEN,
					&q, end) ||
	    lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					 (const unsigned char *)"no-store", 8, &q, end) ||
	    add_cors_headers(wsi, p, &q, end) ||
	    lws_finalize_write_http_header(wsi, start, &q, end))
		return -1;
	return 0;
}

/* A response's headers, into q..end (lws does not send them: they go out
 * with the body's first piece, in one write). */
static int add_headers(struct lws *wsi, const struct http_pss *p, size_t total, unsigned char **q,
		       unsigned char *end)
{
	char len[24];
	int n = snprintf(len, sizeof len, "%zu", total);
	if (p->status == 204)   /* no body, so neither its type nor its length */
		return lws_add_http_header_status(wsi, 204, q, end) ||
		       add_cors_headers(wsi, p, q, end) || lws_finalize_http_header(wsi, q, end);
	return lws_add_http_header_status(wsi, (unsigned)p->status, q, end) ||
	       add_cors_headers(wsi, p, q, end) ||
	       lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
					    (const unsigned char *)p->ctype, (int)strlen(p->ctype), q,
					    end) ||
	       lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH,
					    (const unsigned char *)len, n, q, end) ||
	       lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
					    (const unsigned char *)"no-store", 8, q, end) ||
	       (p->close_after &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
					     (const unsigned char *)"close", 5, q, end)) ||
	       lws_finalize_http_header(wsi, q, end);
}

/* One SSE write: pending events (and telemetry frames), or a heartbeat. */
static int write_sse(struct lws *wsi, struct api *a, struct http_pss *p)
{
	/* The stream is one-way, and lws does not read a connection in the
	 * middle of a response: a client's close (or anything it sends) would
	 * leave the socket readable and the service loop polling it in a spin
	 * until the next write fails. Telemetry ticks bring us here at
	 * --telemetry-hz, so a readable socket is let go within one period. */
	char peek;
	ssize_t r = recv(lws_get_socket_fd(wsi), &peek, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		return -1;
	struct buf lines = BUF_INIT, out = BUF_INIT;
	uint64_t last = p->cursor, oldest;
	buf_reserve(&out, LWS_PRE + CHUNK);
	out.len = LWS_PRE;
	int rc = events_read(&a->o->events, p->cursor, p->mask, CHUNK, &lines, &last, &oldest);
	if (rc == -ERANGE) {
		/* fell out of memory and the store: say so, and end the stream */
		buf_printf(&out, "event: error\ndata: {\"error\":{\"status\":410,\"errno\":\"ERANGE\","
				 "\"message\":\"events after %llu are no longer kept\"}}\n\n",
			   (unsigned long long)p->cursor);
		lws_write(wsi, (unsigned char *)out.data + LWS_PRE, out.len - LWS_PRE, LWS_WRITE_HTTP);
		buf_free(&lines);
		buf_free(&out);
		return -1;
	}
	for (char *line = lines.data; line && *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		/* the seq is the line's first field: {"seq":N,... */
		unsigned long long seq = strtoull(line + 7, NULL, 10);
		buf_printf(&out, "id: %llu\ndata: %.*s\n\n", seq, (int)len, line);
		line = nl ? nl + 1 : line + len;
	}
	p->cursor = last;
	if ((p->mask & EV_TELEMETRY) && p->telemetry_gen != a->telemetry_gen &&
	    a->telemetry_frame.len) {
		p->telemetry_gen = a->telemetry_gen;
		buf_printf(&out, "event: telemetry\ndata: %.*s\n\n", (int)a->telemetry_frame.len - 1,
			   a->telemetry_frame.data);
	}
	int64_t now = time_mono_ns();
	if (out.len == LWS_PRE && now - p->last_write_ns >= (int64_t)a->cfg.heartbeat_s * 1000000000)
		buf_puts(&out, ": keep-alive\n\n");
	int w = 0;
	if (out.len > LWS_PRE) {
		w = lws_write(wsi, (unsigned char *)out.data + LWS_PRE, out.len - LWS_PRE, LWS_WRITE_HTTP);
		p->last_write_ns = now;
	}
	bool more = events_committed(&a->o->events) > p->cursor;
	buf_free(&lines);
	buf_free(&out);
	if (w < 0)
		return -1;
	if (more)
		lws_callback_on_writable(wsi);
	return 0;
}

/* What the socket takes now of the rest of a document or a log, written by
 * the kernel from where it is; -1 with errno (EAGAIN: it takes nothing now). */
static ssize_t send_rest(struct lws *wsi, struct http_pss *p, size_t total)
{
	int fd = lws_get_socket_fd(wsi);
	size_t left = total - p->sent;
	if (p->doc.fd >= 0) {
		off_t off = (off_t)p->sent;
		ssize_t w = sendfile(fd, p->doc.fd, &off, left);
		if (w == 0)
			errno = EIO;   /* truncated under us: the length is promised */
		return w > 0 ? w : -1;
	}
	return send(fd, p->doc.doc->data + p->sent, left, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static int on_writeable(struct lws *wsi, struct api *a, struct http_pss *p)
{
	if (!p->responding)
		return 0;
	if (p->sse && !p->headers_sent) {
		if (write_sse_headers(wsi, p))
			return -1;
		p->headers_sent = true;
		/* A stream lasts: lws would end it at the context's content
		 * timeout (5 s), and it needs no header table any more. (Not
		 * lws_http_mark_sse(), which complains on HTTP/1.) */
		lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
		lws_http_headers_detach(wsi);
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (p->sse)
		return write_sse(wsi, a, p);
	/* the body in pieces, the headers in front of the first; as many pieces
	 * as the socket takes now, each copied where lws wants it (LWS_PRE
	 * before): from the log's file, the shared document or the answer */
	bool from_file = p->doc.fd >= 0, from_doc = p->doc.doc != NULL;
	size_t total = from_file || from_doc ? p->doc.len : p->resp.len;
	if (!a->piece)
		a->piece = xmalloc(LWS_PRE + HEADER_ROOM + CHUNK);
	bool last = p->sent == total && p->headers_sent;
	/* at most HTTP_TURN bytes a turn: a big body takes turns with the
	 * others instead of filling its socket's buffer (megabytes on loopback)
	 * while they wait. Small turns keep it fair: with 256 KiB, 100 clients
	 * of the 4.5 MB worker list saw a p99 of 0.8 s (nginx 0.2 s), the
	 * quickest served coming back for more while others waited; with
	 * 64 KiB, 0.15 s at the same rate. */
	size_t turn_end = p->sent + HTTP_TURN, was_sent = p->sent;
	while (!last && !lws_send_pipe_choked(wsi) && p->sent < turn_end) {
		if (p->headers_sent && (from_file || from_doc) && !lws_is_ssl(wsi)) {
			/* past the first piece, on a plain socket with nothing of
			 * lws's pending: the kernel takes the rest straight from the
			 * file (sendfile) or the shared document, no copy of ours */
			ssize_t w = send_rest(wsi, p, turn_end < total ? turn_end : total);
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;   /* the socket is full: the next WRITEABLE goes on */
			if (w < 0)
				return -1;
			p->sent += (size_t)w;
			last = p->sent == total;
			continue;
		}
		size_t left = total - p->sent, n = left < CHUNK ? left : CHUNK;
		unsigned char *start = a->piece + LWS_PRE, *q = start;
		if (!p->headers_sent && add_headers(wsi, p, total - p->base, &q, start + HEADER_ROOM))
			return -1;
		p->headers_sent = true;
		if (n && from_file) {
			if (pread(p->doc.fd, q, n, (off_t)p->sent) != (ssize_t)n)
				return -1;   /* truncated under us: the length is promised */
		} else if (n) {
			memcpy(q, (from_doc ? p->doc.doc->data : p->resp.data) + p->sent, n);
		}
		last = p->sent + n == total;
		if (lws_write(wsi, start, (size_t)(q - start) + n,
			      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
			return -1;
		p->sent += n;
	}
	if (!last) {
		/* lws's own timeout for the transaction (5 s) cut slow clients
		 * of a big log or document short: what counts is progress */
		if (p->sent != was_sent)
			lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, HTTP_SEND_STALL_S);
		lws_callback_on_writable(wsi);
		return 0;
	}
	p->responding = false;
	request_done(a, p);
	if (p->close_after) {
		/* A refused body may still be on its way (413 is answered before
		 * a byte of it is read): a socket closed on unread data answers
		 * with a reset, which can reach the client before our answer
		 * does. So the rest is read and dropped until the client is
		 * done, or for 2 s at most (a lingering close). */
		p->draining = true;
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, 2);
		return 0;
	}
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
			 size_t len)
{
	struct http_pss *p = user;
	struct api *a = api_of(wsi);
	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
		/* h2c, or WebSocket on the wrong listener: this one is HTTP/1.1 */
		return api_refuse_upgrade(wsi, EINVAL, 400,
					  "no upgrade here: this listener speaks HTTP/1.1 (WebSocket is on --ws)");
	case LWS_CALLBACK_HTTP:
		return on_http(wsi, a, p, in);
	case LWS_CALLBACK_HTTP_BODY:
		if (p->draining)
			return 0;
		if (p->responding)
			return 0;   /* already refused (411, 413): the body is not wanted */
		if (p->body.len + len > p->content_length) {
			respond_error(wsi, p, EFBIG, 0, "the body is longer than its Content-Length");
			p->close_after = true;
			return 0;
		}
		buf_append(&p->body, in, len);
		return 0;
	case LWS_CALLBACK_HTTP_BODY_COMPLETION: {
		if (p->draining)
			return -1;   /* all of it read: nothing left to reset */
		if (p->responding)
			return 0;
		int rc = req_write(a->o, p->worker, p->path, p->body.data ? p->body.data : "",
				   p->body.len, &p->resp);
		buf_free(&p->body);
		respond(wsi, p, rc ? req_status_of(&p->resp) : 200, "application/json");
		return 0;
	}
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return on_writeable(wsi, a, p);
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		/* events were committed: every stream may have something to send
		 * (each vhost is told; each wakes its own protocol's connections) */
		lws_callback_on_writable_all_protocol(lws_get_context(wsi), &api_http_protocol);
		return 0;
	case LWS_CALLBACK_CLOSED_HTTP:
	case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		if (p)
			request_done(a, p);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* tx_packet_size: a piece (headers and up to CHUNK of body) goes to the
 * kernel in one send(); at 0 lws would cut it into 4 KiB sends, each its own
 * syscall and, past the first, its own turn of the service loop. */
const struct lws_protocols api_http_protocol = {
	"http", http_callback, sizeof(struct http_pss), 0, 0, NULL, HEADER_ROOM + CHUNK,
};
