/* client: the orchfs command's two ways to a daemon (client.h). Over a mount,
 * a control write is one write(2) on a descriptor opened for reading and
 * writing, whose answer, or error object, is read back from it. Over HTTP, a
 * small HTTP/1.1 client of the daemon's own API: one request a connection,
 * a body framed by Content-Length or chunked, the event stream as SSE. */
#include "client.h"
#include "json.h"
#include "request.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <unistd.h>

#define FUSE_SUPER_MAGIC 0x65735546

struct conn {
	int fd;
	char in[16384];
	size_t start, end;     /* what in holds, unread */
	int status;
	bool chunked;
	int64_t left;          /* bytes left of the body (of the chunk, if chunked); -1: to EOF */
	bool done;
};

struct client_stream {
	int fd;                /* the mount's events file, or -1 */
	struct conn http;      /* or an SSE response */
	struct buf pending;    /* what was read past the last line */
	bool error_event;      /* SSE: the event being read is an error */
	char *last_error_path; /* where a failed read of the events file says why */
};

int client_error_of(const char *body, size_t len, int status, struct orch_err *err)
{
	cJSON *root = cJSON_ParseWithLength(body, len);
	cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
	const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "errno"));
	const char *message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
	int errnum = name ? err_from_name(name) : 0;
	if (!cJSON_IsObject(e))   /* no error object: not an orchfs that answered */
		err_set(err, ENOTCONN, "not an orchfs API (HTTP %d)", status);
	else
		err_set(err, errnum ? errnum : EIO, "%s", message ? message : "an error without a message");
	cJSON_Delete(root);
	return -err->errnum;
}

/* ---- over a mount ---- */

static char *mount_path(struct client *c, const char *path)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s/%s", c->mount, path);
	return buf_steal(&b);
}

static int read_all(int fd, struct buf *out)
{
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = read(fd, out->data + out->len, out->cap - out->len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
}

/* A file of the mount that could not be opened or read: its path and
 * errno's text (the callers that know what the path stands for, a worker or
 * a task, say it in those words). */
static int mount_failure(const char *path, int errnum, struct orch_err *err)
{
	return err_set(err, errnum, "%s: %s", path, strerror(errnum));
}

int client_use_mount(struct client *c, const char *mount, struct orch_err *err)
{
	memset(c, 0, sizeof *c);
	struct statfs sfs;
	if (statfs(mount, &sfs) != 0)
		return err_set(err, ENOTCONN,
			       errno == ENOTCONN ? "%s: the daemon serving it is gone (a stale mount); "
						   "start it again: orchfs %s"
						 : "no orchfs on %s: start one with: orchfs %s",
			       mount, mount);
	c->mount = xstrdup(mount);
	char *probe = mount_path(c, "mma/pipeline/status");
	bool ours = sfs.f_type == FUSE_SUPER_MAGIC && access(probe, R_OK) == 0;
	free(probe);
	if (!ours) {
		free(c->mount);
		c->mount = NULL;
		return err_set(err, ENOTCONN, "no orchfs on %s: start one with: orchfs %s", mount, mount);
	}
	return 0;
}

static int mount_read(struct client *c, const char *path, uint64_t offset, struct buf *out,
		      struct orch_err *err)
{
	char *full = mount_path(c, path);
	int fd = open(full, O_RDONLY | O_CLOEXEC);
	free(full);
	if (fd < 0)
		return mount_failure(path, errno, err);
	int rc = offset && lseek(fd, (off_t)offset, SEEK_SET) < 0 ? -errno : read_all(fd, out);
	close(fd);
	return rc ? mount_failure(path, -rc, err) : 0;
}

static int mount_write(struct client *c, const char *path, const char *body, size_t len,
		       struct buf *reply, struct orch_err *err)
{
	if (!len)   /* a write of nothing never reaches the daemon */
		return err_set(err, EINVAL, "%s: an empty command", path);
	char *full = mount_path(c, path);
	int fd = open(full, O_RDWR | O_CLOEXEC);
	free(full);
	if (fd < 0)
		return mount_failure(path, errno, err);
	/* one write(2) is one command: its answer, or its error object, is
	 * what the descriptor reads back */
	ssize_t n = write(fd, body, len);
	int werr = n < 0 ? errno : n != (ssize_t)len ? EIO : 0;
	int rc = read_all(fd, reply);
	close(fd);
	if (werr) {
		if (reply->len)
			client_error_of(reply->data, reply->len, 0, err);
		else
			mount_failure(path, werr, err);
		err->errnum = werr;   /* the write's own errno is the truth */
		buf_reset(reply);
		return -werr;
	}
	if (rc)
		return mount_failure(path, -rc, err);
	/* A command of a multiple of 4 KiB is applied at the first read (it may
	 * go on in a next write), so its refusal is what that read returns. */
	cJSON *back = reply->len && reply->data[0] == '{' ? cJSON_ParseWithLength(reply->data, reply->len) : NULL;
	bool refused = cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(back, "error"));
	cJSON_Delete(back);
	if (refused) {
		rc = client_error_of(reply->data, reply->len, 0, err);
		buf_reset(reply);
	}
	return rc;
}

/* ---- over HTTP ---- */

int client_use_url(struct client *c, const char *url, const char *token, struct orch_err *err)
{
	memset(c, 0, sizeof *c);
	if (strncmp(url, "https://", 8) == 0)
		return err_set(err, ENOTSUP,
			       "%s: the orchfs command speaks plain HTTP only; reach an HTTPS daemon "
			       "through a tunnel (ssh -L) or with curl", url);
	if (strncmp(url, "http://", 7) != 0)
		return err_set(err, EINVAL, "%s: a URL is http://HOST:PORT", url);
	const char *h = url + 7, *end = h + strcspn(h, "/");
	if (end[0] == '/' && end[1])
		return err_set(err, EINVAL, "%s: a URL is http://HOST:PORT, without a path", url);
	const char *colon;
	if (*h == '[') {   /* [v6]:port */
		const char *close = memchr(h, ']', (size_t)(end - h));
		if (!close)
			return err_set(err, EINVAL, "%s: an unclosed [ in the address", url);
		if (close + 1 != end && close[1] != ':')
			return err_set(err, EINVAL, "%s: a URL is http://[V6ADDRESS]:PORT", url);
		c->host = xstrndup(h + 1, (size_t)(close - h - 1));
		colon = close[1] == ':' ? close + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		c->host = xstrndup(h, (size_t)((colon ? colon : end) - h));
	}
	c->port = colon ? xstrndup(colon + 1, (size_t)(end - colon - 1)) : xstrdup("80");
	if (!c->host[0] || !c->port[0] || strspn(c->port, "0123456789") != strlen(c->port)) {
		client_close(c);
		return err_set(err, EINVAL, "%s: a URL is http://HOST:PORT", url);
	}
	c->token = token ? xstrdup(token) : NULL;
	return 0;
}

void client_close(struct client *c)
{
	free(c->mount);
	free(c->host);
	free(c->port);
	free(c->token);
	memset(c, 0, sizeof *c);
}

static int conn_fill(struct conn *k)
{
	if (k->start == k->end)
		k->start = k->end = 0;
	if (k->end == sizeof k->in) {
		memmove(k->in, k->in + k->start, k->end - k->start);
		k->end -= k->start;
		k->start = 0;
	}
	/* EINTR too: a follower's Ctrl-C ends its wait */
	ssize_t n = recv(k->fd, k->in + k->end, sizeof k->in - k->end, 0);
	if (n < 0)
		return -errno;
	k->end += (size_t)n;
	return n > 0;
}

/* A line of the head or of chunk framing, without its CRLF, into line. */
static int conn_line(struct conn *k, char *line, size_t size)
{
	for (;;) {
		char *nl = memchr(k->in + k->start, '\n', k->end - k->start);
		if (nl) {
			size_t n = (size_t)(nl - (k->in + k->start));
			size_t keep = n && nl[-1] == '\r' ? n - 1 : n;
			if (keep >= size)
				return -EPROTO;
			memcpy(line, k->in + k->start, keep);
			line[keep] = '\0';
			k->start += n + 1;
			return 0;
		}
		if (k->end - k->start == sizeof k->in)
			return -EPROTO;
		int rc = conn_fill(k);
		if (rc <= 0)
			return rc ? rc : -EPROTO;
	}
}

/* Up to size bytes of the body; 0 at its end. */
static ssize_t conn_body(struct conn *k, char *dst, size_t size)
{
	char line[64];
	while (!k->done) {
		if (k->chunked && k->left == 0) {
			int rc = conn_line(k, line, sizeof line);
			if (rc)
				return rc == -EINTR ? rc : -EPROTO;
			if (!line[0])   /* the CRLF after a chunk's data */
				continue;
			char *end;
			errno = 0;
			k->left = (int64_t)strtoll(line, &end, 16);
			if (errno || end == line || k->left < 0 || (*end && *end != ';'))
				return -EPROTO;
			if (k->left == 0) {
				k->done = true;
				break;
			}
		}
		if (!k->chunked && k->left == 0) {
			k->done = true;
			break;
		}
		if (k->start == k->end) {
			int rc = conn_fill(k);
			if (rc < 0)
				return rc;
			if (rc == 0) {
				k->done = true;
				if (k->left > 0)
					return -EPROTO;   /* cut short */
				break;
			}
		}
		size_t n = k->end - k->start;
		if (k->left >= 0 && (int64_t)n > k->left)
			n = (size_t)k->left;
		if (n > size)
			n = size;
		memcpy(dst, k->in + k->start, n);
		k->start += n;
		if (k->left > 0)
			k->left -= (int64_t)n;
		return (ssize_t)n;
	}
	return 0;
}

static int http_connect(struct client *c, struct orch_err *err)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
	int rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc)
		return err_set(err, ENOTCONN, "%s: %s", c->host, gai_strerror(rc));
	int fd = -1, why = ECONNREFUSED;
	for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
			why = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	/* a daemon that stops answering is given up on (a stream waits for
	 * events without it, once its head came) */
	struct timeval patience = {.tv_sec = 30};
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
	if (fd < 0)
		return err_set(err, ENOTCONN, "no orchfs API at http://%s:%s: %s", c->host, c->port,
			       strerror(why));
	return fd;
}

static int send_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Sends a request and reads the head of its answer into k. */
static int http_begin(struct client *c, const char *method, const char *target, const char *body,
		      size_t len, struct conn *k, struct orch_err *err)
{
	memset(k, 0, sizeof *k);
	k->fd = http_connect(c, err);
	if (k->fd < 0)
		return k->fd;
	bool v6 = strchr(c->host, ':') != NULL;
	struct buf req = BUF_INIT;
	buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: close\r\n", method, target,
		   v6 ? "[" : "", c->host, v6 ? "]" : "", c->port);
	if (c->token)
		buf_printf(&req, "Authorization: Bearer %s\r\n", c->token);
	if (body)
		buf_printf(&req, "Content-Type: text/plain\r\nContent-Length: %zu\r\n", len);
	buf_puts(&req, "\r\n");
	int rc = send_all(k->fd, req.data, req.len);
	if (!rc && body)
		rc = send_all(k->fd, body, len);
	buf_free(&req);
	char line[1024];
	unsigned long long length;
	/* a refusal may come before the body is all sent (413): its answer
	 * is read all the same */
	if (!rc || rc == -EPIPE || rc == -ECONNRESET)
		rc = conn_line(k, line, sizeof line);
	if (!rc && sscanf(line, "HTTP/1.%*d %d", &k->status) != 1)
		rc = -EPROTO;
	k->left = -1;
	while (!rc && !(rc = conn_line(k, line, sizeof line)) && line[0]) {
		if (strncasecmp(line, "content-length:", 15) == 0 &&
		    !req_content_length(line + 15 + strspn(line + 15, " \t"), &length))
			rc = -EPROTO;
		else if (strncasecmp(line, "content-length:", 15) == 0)
			k->left = (int64_t)length;
		else if (strncasecmp(line, "transfer-encoding:", 18) == 0 && strcasestr(line, "chunked"))
			k->chunked = true;
	}
	if (k->chunked)
		k->left = 0;
	if (rc) {
		close(k->fd);
		k->fd = -1;
		return err_set(err, EIO, "http://%s:%s%s: a broken answer (%s)", c->host, c->port, target,
			       strerror(-rc));
	}
	return 0;
}

static int http_rest(struct conn *k, struct buf *out)
{
	for (;;) {
		buf_reserve(out, 65536);
		ssize_t n = conn_body(k, out->data + out->len, out->cap - out->len - 1);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return 0;
		out->len += (size_t)n;
		out->data[out->len] = '\0';
	}
}

static int http_exchange(struct client *c, const char *method, const char *target, const char *body,
			 size_t len, struct buf *out, struct orch_err *err)
{
	struct conn k;
	int rc = http_begin(c, method, target, body, len, &k, err);
	if (rc)
		return rc;

	struct buf got = BUF_INIT;
	rc = http_rest(&k, &got);
	close(k.fd);
	if (rc) {
		buf_free(&got);
		return err_set(err, EIO, "%s: the answer was cut short", target);
	}
	if (k.status >= 300)
		rc = client_error_of(got.data ? got.data : "", got.len, k.status, err);
	else
		buf_append(out, got.data ? got.data : "", got.len);
	buf_free(&got);
	return rc;
}

/* ---- either way ---- */

int client_read(struct client *c, const char *path, struct buf *out, struct orch_err *err)
{
	return client_read_from(c, path, 0, out, err);
}

int client_read_from(struct client *c, const char *path, uint64_t offset, struct buf *out,
		     struct orch_err *err)
{
	if (c->mount)
		return mount_read(c, path, offset, out, err);
	struct buf target = BUF_INIT;
	buf_printf(&target, "/api/%s", path);
	if (offset)
		buf_printf(&target, "?offset=%llu", (unsigned long long)offset);
	int rc = http_exchange(c, "GET", target.data, NULL, 0, out, err);
	buf_free(&target);
	return rc;
}

int client_write(struct client *c, const char *path, const char *body, size_t len, struct buf *reply,
		 struct orch_err *err)
{
	if (c->mount)
		return mount_write(c, path, body, len, reply, err);
	struct buf target = BUF_INIT;
	buf_printf(&target, "/api/%s", path);
	int rc = http_exchange(c, "POST", target.data, body, len, reply, err);
	buf_free(&target);
	return rc;
}

/* since N, channels a,b: refused, the descriptor reads back why */
static int events_command(struct client_stream *s, const char *cmd, struct orch_err *err)
{
	size_t len = strlen(cmd);
	if (write(s->fd, cmd, len) == (ssize_t)len)
		return 0;
	int werr = errno;
	struct buf back = BUF_INIT;
	if (read_all(s->fd, &back) == 0 && back.len)
		client_error_of(back.data, back.len, 0, err);
	else
		err_set(err, werr, "events: %s", strerror(werr));
	err->errnum = werr;
	buf_free(&back);
	return -werr;
}

int client_events(struct client *c, uint64_t since, const char *channels, struct client_stream **out,
		  struct orch_err *err)
{
	struct client_stream *s = xcalloc(1, sizeof *s);
	s->fd = -1;
	s->http.fd = -1;
	int rc = 0;
	if (c->mount) {
		char *events = mount_path(c, "events");
		s->last_error_path = mount_path(c, "last_error");
		s->fd = open(events, O_RDWR | O_CLOEXEC);
		free(events);
		if (s->fd < 0)
			rc = mount_failure("events", errno, err);
		char cmd[320];
		if (!rc && since != CLIENT_SINCE_NOW) {
			snprintf(cmd, sizeof cmd, "since %llu\n", (unsigned long long)since);
			rc = events_command(s, cmd, err);
		}
		if (!rc && channels && *channels) {
			if (snprintf(cmd, sizeof cmd, "channels %s\n", channels) >= (int)sizeof cmd)
				rc = err_set(err, EINVAL, "too many channels: %s", channels);
			else
				rc = events_command(s, cmd, err);
		}
	} else {
		struct buf target = BUF_INIT;
		buf_puts(&target, "/api/events?");
		if (since != CLIENT_SINCE_NOW)
			buf_printf(&target, "since=%llu&", (unsigned long long)since);
		if (channels && *channels)
			buf_printf(&target, "channels=%s", channels);
		rc = http_begin(c, "GET", target.data, NULL, 0, &s->http, err);
		struct timeval forever = {0};
		if (!rc)
			setsockopt(s->http.fd, SOL_SOCKET, SO_RCVTIMEO, &forever, sizeof forever);
		if (!rc && s->http.status >= 300) {
			struct buf got = BUF_INIT;
			http_rest(&s->http, &got);
			rc = client_error_of(got.data ? got.data : "", got.len, s->http.status, err);
			buf_free(&got);
		}
		buf_free(&target);
	}
	if (rc) {
		client_stream_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

static int stream_more(struct client_stream *s, struct orch_err *err)
{
	char chunk[65536];
	ssize_t n;
	if (s->fd >= 0) {
		n = read(s->fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			return err_set(err, EINTR, "interrupted");
		if (n < 0 && (errno == ECONNABORTED || errno == ENOTCONN))
			return err_set(err, ENOTCONN, "the daemon stopped");
		if (n < 0) {
			/* a read fails with the error in last_error (ERANGE: too old a since) */
			int errnum = errno;
			struct buf last = BUF_INIT;
			int fd = open(s->last_error_path, O_RDONLY | O_CLOEXEC);
			if (fd >= 0 && read_all(fd, &last) == 0 && last.len &&
			    client_error_of(last.data, last.len, 0, err) == -errnum) {
				close(fd);
				buf_free(&last);
				return -errnum;
			}
			if (fd >= 0)
				close(fd);
			buf_free(&last);
			return err_set(err, errnum, "events: %s", strerror(errnum));
		}
	} else {
		n = conn_body(&s->http, chunk, sizeof chunk);
		if (n == -EINTR)
			return err_set(err, EINTR, "interrupted");
		if (n < 0)
			return err_set(err, EIO, "the event stream broke: %s", strerror((int)-n));
	}
	buf_append(&s->pending, chunk, (size_t)n);
	return n > 0;
}

int client_stream_next(struct client_stream *s, struct buf *line, struct orch_err *err)
{
	struct buf field = BUF_INIT;
	int rc;
	for (;;) {
		while (buf_take_line(&s->pending, &field)) {
			if (s->fd >= 0) {
				buf_reset(line);
				buf_append(line, field.data, field.len);
				buf_free(&field);
				return 1;
			}
			/* SSE: an event's fields ("event:", "id:", "data:") up to a
			 * blank line; ours have one data line each */
			if (field.len == 0)
				s->error_event = false;
			else if (strcmp(field.data, "event: error") == 0)
				s->error_event = true;
			else if (strncmp(field.data, "data: ", 6) == 0) {
				rc = s->error_event ? client_error_of(field.data + 6, field.len - 6, 410, err) : 1;
				if (rc == 1) {
					buf_reset(line);
					buf_append(line, field.data + 6, field.len - 6);
				}
				buf_free(&field);
				return rc;
			}
		}
		rc = stream_more(s, err);
		if (rc <= 0) {
			buf_free(&field);
			return rc;
		}
	}
}

void client_stream_close(struct client_stream *s)
{
	if (!s)
		return;
	if (s->fd >= 0)
		close(s->fd);
	if (s->http.fd >= 0)
		close(s->http.fd);
	buf_free(&s->pending);
	free(s->last_error_path);
	free(s);
}
