/* request: the API's requests without the transport (request.h). A path
 * resolves as on the mount (bridge/nodes.h), so HTTP, WebSocket and the mount
 * answer the same thing the same way. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "nodes.h"
#include "request.h"

/* A header longer than this is refused rather than judged. */
#define HEADER_MAX 255

/* A Host that is not the listener's own name: a DNS rebinding page's. */
static bool host_refused(const struct req_site *site, const struct req_headers *h, char *why,
			 size_t whysize)
{
	if (h->host && strlen(h->host) <= HEADER_MAX && auth_host_ok(h->host, site->addr, site->port))
		return false;
	snprintf(why, whysize, "Host \"%.*s\" is not this listener's own name", HEADER_MAX,
		 h->host ? h->host : "");
	return true;
}

int req_admit(const struct req_site *site, const struct req_headers *h, int *worker, char *why,
	      size_t whysize)
{
	*worker = 0;
	if (host_refused(site, h, why, whysize))
		return 403;
	if (h->origin && strlen(h->origin) > HEADER_MAX) {
		snprintf(why, whysize, "Origin header too long");
		return 403;
	}
	if (h->origin && h->origin[0] && !auth_origin_ok(h->origin, site->addr, site->ports, 2) &&
	    !req_cors_origin(site, h)) {
		snprintf(why, whysize, "Origin \"%s\" is not this server's own", h->origin);
		return 403;
	}
	if (!site->token)
		return 0;
	size_t len = 0;
	const char *given = NULL;
	if (h->authorization && h->authorization[0] && strlen(h->authorization) <= HEADER_MAX)
		given = auth_bearer(h->authorization, &len);
	else if (h->token_arg) {
		given = h->token_arg;
		len = strlen(given);
	}
	int owner = given ? auth_token_owner(site->token, given, len) : -1;
	if (owner < 0) {
		snprintf(why, whysize, given ? "the token is not valid"
					     : "no token: send Authorization: Bearer TOKEN");
		return 401;
	}
	*worker = owner;
	return 0;
}

const char *req_cors_origin(const struct req_site *site, const struct req_headers *h)
{
	if (!h->origin || strlen(h->origin) > HEADER_MAX)
		return NULL;
	return auth_origin_listed(h->origin, site->allow_origins, site->n_allow_origins);
}

int req_preflight(const struct req_site *site, const struct req_headers *h, char *why,
		  size_t whysize)
{
	if (host_refused(site, h, why, whysize))
		return 403;
	if (!req_cors_origin(site, h)) {
		snprintf(why, whysize, "Origin \"%.*s\" may not call this server: start orchfs with "
			 "--allow-origin ORIGIN for a page of your own", HEADER_MAX,
			 h->origin ? h->origin : "");
		return 403;
	}
	return 204;
}

bool req_content_length(const char *text, unsigned long long *n)
{
	/* strtoull would take "-1" (as 2^64 - 1), "+5" and " 5" */
	size_t len = strlen(text);
	if (len == 0 || len > 19)
		return false;
	*n = 0;
	for (const char *c = text; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		*n = *n * 10 + (unsigned long long)(*c - '0');
	}
	return true;
}

int req_stream_open(struct events *ev, const char *channels, const char *since,
		    const char *last_event_id, unsigned *mask, uint64_t *cursor, char *why,
		    size_t whysize)
{
	*mask = EV_ALL_EVENTS;
	*cursor = events_committed(ev);
	if (channels) {
		*mask = events_channel_mask(channels, strlen(channels), why, whysize);
		if (!*mask)
			return -EINVAL;
	}
	if (!since)
		since = last_event_id;
	return since ? events_since(ev, since, strlen(since), cursor, why, whysize) : 0;
}

/* Opens a log for the transports to send from in pieces: it is never read whole. */
static int open_log(struct orch *o, const struct node *n, struct req_body *log)
{
	char *file;
	struct stat st;
	int rc = node_log_path(o, n, &file);
	if (rc)
		return rc;
	log->fd = open(file, O_RDONLY | O_CLOEXEC);
	free(file);
	if (log->fd >= 0 && fstat(log->fd, &st) == 0) {
		log->len = (size_t)st.st_size;
		return 0;
	}
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
	return -EIO;
}

void req_body_done(struct req_body *body)
{
	if (body->fd >= 0)
		close(body->fd);
	node_body_put(body->doc);
	*body = (struct req_body){.fd = -1};
}

int req_read(struct orch *o, const char *path, struct buf *out, bool *is_json, struct req_body *body)
{
	struct node n;
	char resolved[600];
	struct orch_err err = {0};
	int rc = node_resolve_api(o, path, &n, resolved, sizeof resolved);
	*is_json = true;
	*body = (struct req_body){.fd = -1};
	if (rc) {
		err_set(&err, ENOENT, "no such file: %s", path);
	} else if (node_type(&n) == NODE_DIR) {
		rc = node_render_listing(o, &n, resolved, out);
	} else if (node_type(&n) == NODE_LINK) {
		rc = node_readlink(o, &n, out);
		buf_putc(out, '\n');
		*is_json = false;
	} else if (node_flags(&n) & NODE_LOG) {
		*is_json = false;
		rc = open_log(o, &n, body);
	} else if (node_flags(&n) & NODE_DOC) {
		rc = node_render_shared(o, &n, &body->doc);
		body->len = rc ? 0 : body->doc->len;
		*is_json = (node_flags(&n) & NODE_JSON) != 0;
	} else {
		/* a control file: its content is the result of a write, per descriptor */
		err_set(&err, EACCES, "%s is a control file: POST to it", resolved);
		rc = -ENOTSUP;   /* answered 405 */
	}
	if (rc && !err.errnum)
		err_set(&err, -rc, "%s: %s", path, strerror(-rc));
	if (rc) {
		buf_reset(out);
		err_render_status(&err, path, rc == -ENOTSUP ? 405 : err_http_status(err.errnum), out);
	}
	return rc;
}

int req_write(struct orch *o, int worker, const char *path, const char *body, size_t len,
	      struct buf *out)
{
	struct node n;
	char resolved[600];
	/* a control file by its own name; /api/state and the like still resolve,
	 * so a POST to them is refused as a read-only file (405), not unknown */
	if (node_resolve(o, path, &n) != 0 &&
	    node_resolve_api(o, path, &n, resolved, sizeof resolved) != 0) {
		struct orch_err err;
		err_set(&err, ENOENT, "no such file: %s", path);
		err_render(&err, path, out);
		return -ENOENT;
	}
	if (!(node_flags(&n) & NODE_CTL))
		/* the mount's errno for a write to a read-only file; over HTTP it
		 * is the wrong method as well */
		return node_write_error_status(o, path, EACCES, 405,
					       "read-only: only control files take POST", out);
	char own[48];
	snprintf(own, sizeof own, "mma/workers/%d/usage", worker);
	if (worker > 0 && strcmp(path, own) != 0) {
		char why[160];
		snprintf(why, sizeof why, "this token is worker %d's: it may read, and report that "
			 "worker's usage (%s), nothing else", worker, own);
		return node_write_error_status(o, path, EACCES, 403, why, out);
	}
	return node_write(o, &n, path, body, len, NULL, out);
}

int req_status_of(const struct buf *object)
{
	cJSON *e = cJSON_ParseWithLength(object->data, object->len);
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "error"),
							   "status");
	int status = cJSON_IsNumber(st) ? (int)st->valuedouble : 500;
	cJSON_Delete(e);
	return status;
}

/* --- WebSocket messages --- */

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

static cJSON *reply_rendered_error(const cJSON *id, const struct buf *rendered)
{
	cJSON *d = reply_doc(id, false);
	cJSON_AddItemToObject(d, "error", error_inner(rendered->data));
	return d;
}

static cJSON *reply_error(const cJSON *id, int errnum, const char *path, const char *message)
{
	struct orch_err err;
	struct buf b = BUF_INIT;
	err_set(&err, errnum, "%s", message);
	err_render(&err, path, &b);
	cJSON *d = reply_rendered_error(id, &b);
	buf_free(&b);
	return d;
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

static cJSON *op_subscribe(struct orch *o, struct req_ws *c, const cJSON *msg, const cJSON *id,
			   bool subscribe)
{
	char bad[200];
	unsigned mask = channels_of(cJSON_GetObjectItemCaseSensitive(msg, "channels"), bad, sizeof bad);
	if (!mask)
		return reply_error(id, EINVAL, "", bad);
	if (!subscribe) {
		c->mask &= ~mask;
		c->subscribed = c->mask != 0;
	} else {
		const cJSON *since = cJSON_GetObjectItemCaseSensitive(msg, "since");
		int64_t v = -1;
		char text[32] = "", m[200];
		/* a JSON number, else its text: events_since says what is wrong */
		if (since && json_int(since, 0, INT64_MAX / 2, &v))
			snprintf(text, sizeof text, "%lld", (long long)v);
		else if (since)
			snprintf(text, sizeof text, "%s", cJSON_IsString(since) ? since->valuestring : "?");
		uint64_t cursor = c->cursor;
		int rc = since ? events_since(&o->events, text, strlen(text), &cursor, m, sizeof m) : 0;
		if (rc)
			return reply_error(id, -rc, "", m);
		c->cursor = since ? cursor : c->subscribed ? c->cursor : events_committed(&o->events);
		c->mask |= mask;
		c->subscribed = true;
	}
	cJSON *d = reply_doc(id, true);
	cJSON *r = cJSON_AddObjectToObject(d, "result");
	json_add_i64(r, "seq", (int64_t)c->cursor);
	cJSON *chans = cJSON_AddArrayToObject(r, "channels");
	for (unsigned bit = 1; bit <= EV_TELEMETRY; bit <<= 1)
		if (c->mask & bit)
			cJSON_AddItemToArray(chans, cJSON_CreateString(events_channel_name(bit)));
	return d;
}

/* {"op":"read","path":P,"offset":N} of a log answers at most REQ_LOG_PIECE
 * bytes from N (0 by default) as "result", the log's "size" now, and "next",
 * the offset to ask for, while there is more. */
static cJSON *read_log_piece(const cJSON *msg, const cJSON *id, const char *path,
			     const struct req_body *log)
{
	const cJSON *o = cJSON_GetObjectItemCaseSensitive(msg, "offset");
	int64_t offset = 0;
	size_t size = log->len;
	if (o && (!json_int(o, 0, INT64_MAX / 2, &offset) || (uint64_t)offset > size)) {
		char why[96];
		snprintf(why, sizeof why, "\"offset\" must be a whole number 0..%zu (the log's size)",
			 size);
		return reply_error(id, EINVAL, path, why);
	}
	size_t want = size - (size_t)offset < REQ_LOG_PIECE ? size - (size_t)offset : REQ_LOG_PIECE;
	char *piece = xmalloc(want + 1);
	ssize_t got = pread(log->fd, piece, want, (off_t)offset);
	size_t n = got > 0 ? (size_t)got : 0;
	/* back off over a character cut in two (at most 3 bytes of it) */
	if ((size_t)offset + n < size)
		for (size_t back = 1; back <= 3 && back <= n; back++) {
			unsigned char ch = (unsigned char)piece[n - back];
			if ((ch & 0xC0) == 0x80)
				continue;   /* a continuation byte: look further back */
			size_t need = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
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
	return d;
}

static cJSON *op_read_write(struct orch *o, const struct req_ws *c, const cJSON *msg,
			    const cJSON *id, bool write)
{
	const cJSON *path = cJSON_GetObjectItemCaseSensitive(msg, "path");
	if (!cJSON_IsString(path))
		return reply_error(id, EINVAL, "", "\"path\" is required (a string)");
	struct buf out = BUF_INIT;
	struct req_body body = {.fd = -1};
	int rc;
	bool is_json = true;
	if (write) {
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(msg, "body");
		char *text = NULL;
		if (cJSON_IsString(b))
			text = xstrdup(b->valuestring);
		else if (b) {   /* a JSON body may come as JSON itself */
			struct buf j = BUF_INIT;
			json_write(&j, b);
			text = buf_steal(&j);
		}
		if (!text)
			return reply_error(id, EINVAL, path->valuestring, "\"body\" is required");
		rc = req_write(o, c->worker, path->valuestring, text, strlen(text), &out);
		free(text);
	} else {
		rc = req_read(o, path->valuestring, &out, &is_json, &body);
		if (body.fd >= 0) {
			cJSON *d = read_log_piece(msg, id, path->valuestring, &body);
			req_body_done(&body);
			buf_free(&out);
			return d;
		}
	}
	cJSON *d;
	if (rc) {
		d = reply_rendered_error(id, &out);
	} else {
		/* a document is read where the render cache holds it */
		const char *text = body.doc ? body.doc->data : out.data ? out.data : "";
		size_t len = body.doc ? body.doc->len : out.len;
		d = reply_doc(id, true);
		cJSON *result = is_json ? cJSON_ParseWithLength(text, len) : NULL;
		cJSON_AddItemToObject(d, "result", result ? result : cJSON_CreateString(text));
	}
	req_body_done(&body);
	buf_free(&out);
	return d;
}

/* cJSON ends a string at \u0000, so a message holding one is refused whole;
 * a write's refusal is the file's, in last_error, as on the mount. */
static cJSON *refuse_nul(struct orch *o, const cJSON *msg, const cJSON *id, bool write)
{
	static const char why[] = "a string holds \\u0000: NUL is refused";
	const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "path"));
	if (!write || !path)
		return reply_error(id, EINVAL, path ? path : "", why);
	struct buf out = BUF_INIT;
	node_write_error(o, path, EINVAL, why, &out);
	cJSON *d = reply_rendered_error(id, &out);
	buf_free(&out);
	return d;
}

void req_ws_message(struct orch *o, struct req_ws *c, const char *data, size_t len, struct buf *reply)
{
	cJSON *msg = cJSON_ParseWithLength(data, len), *d;
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(msg, "id");
	const char *op = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(msg, "op"));
	if (!cJSON_IsObject(msg))
		d = reply_error(NULL, EINVAL, "", "a message is one JSON object with \"op\"");
	else if (!op)
		d = reply_error(id, EINVAL, "", "\"op\" is required");
	else if (!strcmp(op, "subscribe") || !strcmp(op, "unsubscribe"))
		d = op_subscribe(o, c, msg, id, !strcmp(op, "subscribe"));
	else if (json_nul_escape(data, len) < len)
		d = refuse_nul(o, msg, id, !strcmp(op, "write"));
	else if (!strcmp(op, "read") || !strcmp(op, "write"))
		d = op_read_write(o, c, msg, id, !strcmp(op, "write"));
	else
		d = reply_error(id, EINVAL, "", "unknown op; ops are subscribe, unsubscribe, read, write");
	cJSON_Delete(msg);
	json_write(reply, d);
	cJSON_Delete(d);
}
