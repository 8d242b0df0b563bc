/* request: what the HTTP and WebSocket API do with a request once the
 * transport has its fields (README, "Remote: HTTP, SSE and WebSocket"): who
 * may ask, what a path reads or writes, a body's framing, an event stream's
 * start, and the WebSocket protocol's messages. Plain C, so the tests and the
 * fuzzers call it without a socket; api/ only moves bytes.
 *   {"op":"subscribe","channels":["dag"],"since":40}   -> {"ok":true,"result":{"seq":40,…}}
 *   {"op":"read","path":"mma/pipeline/status","id":1}  -> {"id":1,"ok":true,"result":"running\n"} */
#ifndef ORCHFS_REQUEST_H
#define ORCHFS_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "nodes.h"
#include "orch.h"

/* Who this listener is and what it asks of a client. */
struct req_site {
	const char *addr;         /* the listener's address */
	int port;
	int ports[2];             /* both listeners' ports (0: off): a page of ours may come from either */
	const char *token;        /* NULL: no token asked (--no-auth) */
	const char *const *allow_origins;   /* --allow-origin: other pages that may call us */
	size_t n_allow_origins;
};

/* A request's headers as sent (NULL when absent), and ?token=. */
struct req_headers {
	const char *host, *origin, *authorization, *token_arg;
};

/* 0 when the request may go on, else the HTTP status to refuse it with (401,
 * 403) and why. *worker: whose token it came with, 0 for the daemon's own (or
 * none asked), N for worker N's, which may read and report N's usage only. */
int req_admit(const struct req_site *site, const struct req_headers *h, int *worker, char *why,
	      size_t whysize);

/* A CORS preflight (OPTIONS, sent without a token): 204 when the Host is
 * ours and the Origin is one of site->allow_origins, else 403 and why. */
int req_preflight(const struct req_site *site, const struct req_headers *h, char *why,
		  size_t whysize);
/* The Origin to name in Access-Control-Allow-Origin (as sent), or NULL when
 * the request has none of site->allow_origins. */
const char *req_cors_origin(const struct req_site *site, const struct req_headers *h);
/* What a preflight's 204 says may follow. */
#define REQ_CORS_METHODS "GET, POST"
#define REQ_CORS_HEADERS "Authorization, Content-Type, Last-Event-ID"

/* A Content-Length's value: digits only (no sign, space or hex), at most 19
 * of them. false for anything else. */
bool req_content_length(const char *text, unsigned long long *n);

/* An event stream's start from ?channels=, ?since= (or Last-Event-ID),
 * each NULL when absent: the channels' mask and the cursor to read from; or
 * -errno and why. */
int req_stream_open(struct events *ev, const char *channels, const char *since,
		    const char *last_event_id, unsigned *mask, uint64_t *cursor, char *why,
		    size_t whysize);

/* What req_read hands over instead of a rendering: a worker's log, open (fd,
 * -1 when the path is not a log) with its length then, or a document as the
 * render cache holds it (doc, shared: no copy per request). The caller sends
 * it and lets go (req_body_done). */
struct req_body {
	int fd;
	size_t len;
	struct node_body *doc;
};

/* What GET /api/P answers: a document or a log in body, anything else (a
 * listing, a link, the error object with its HTTP "status", -errno) rendered
 * into out. is_json says whether what is answered is JSON. */
int req_read(struct orch *o, const char *path, struct buf *out, bool *is_json, struct req_body *body);
void req_body_done(struct req_body *body);
/* What POST /api/P does: the body written to control file P; the result or
 * the error object in out. worker: as req_admit says (N > 0: only
 * mma/workers/N/usage is N's to write; anything else is EACCES, 403). */
int req_write(struct orch *o, int worker, const char *path, const char *body, size_t len,
	      struct buf *out);
/* The HTTP status an error object carries. */
int req_status_of(const struct buf *object);

/* A WebSocket client's subscription. */
struct req_ws {
	int worker;               /* whose token it came with (req_admit) */
	bool subscribed;
	unsigned mask;
	uint64_t cursor;          /* the last seq it was sent */
};

/* A worker's log is read over WebSocket a piece at a time: at most this
 * from "offset", ending on a whole UTF-8 character where the bytes allow. */
#define REQ_LOG_PIECE (256 * 1024)

/* Answers one message of the orchfs.v1 protocol: appends the reply (one JSON
 * object) to reply, and moves the subscription in c. Never fails: a bad
 * message gets an error reply. */
void req_ws_message(struct orch *o, struct req_ws *c, const char *data, size_t len, struct buf *reply);

#endif
