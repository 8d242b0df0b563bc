/* server: the libwebsockets context with its two listeners, the service
 * thread, and the pump that wakes it when events are committed. Other threads
 * touch lws only through lws_cancel_service(), the one call lws allows them. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "nodes.h"
#include "telemetry.h"

int api_parse_listen(const char *s, struct api_listen *out, struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	if (strcmp(s, "off") == 0) {
		out->off = true;
		return 0;
	}
	const char *colon;
	size_t alen;
	const char *addr = s;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return err_set(err, EINVAL, "\"%s\": want [ADDR]:PORT", s);
		addr = s + 1;
		alen = (size_t)(end - addr);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return err_set(err, EINVAL, "\"%s\": want ADDR:PORT or off", s);
		alen = (size_t)(colon - s);
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 1 || port > 65535 || alen == 0 ||
	    alen >= sizeof out->addr)
		return err_set(err, EINVAL, "\"%s\": want ADDR:PORT with a port from 1 to 65535", s);
	memcpy(out->addr, addr, alen);
	out->addr[alen] = '\0';
	if (strcmp(out->addr, "localhost") == 0)
		strcpy(out->addr, "127.0.0.1");
	out->port = (int)port;
	return 0;
}

static int check_bind(const struct api_listen *l, const char *name, struct orch_err *err)
{
	if (l->off)
		return 0;
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int family = strchr(l->addr, ':') ? AF_INET6 : AF_INET;
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)l->port);
		if (inet_pton(AF_INET6, l->addr, &a->sin6_addr) != 1)
			return err_set(err, EINVAL, "%s: \"%s\" is not an address", name, l->addr);
		len = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)l->port);
		if (inet_pton(AF_INET, l->addr, &a->sin_addr) != 1)
			return err_set(err, EINVAL, "%s: \"%s\" is not an address", name, l->addr);
		len = sizeof *a;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	int rc = fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ? -errno : 0;
	if (fd >= 0)
		close(fd);
	if (rc)
		return err_set(err, -rc == EADDRINUSE ? EBUSY : EACCES, "%s %s:%d: %s", name, l->addr,
			       l->port, strerror(-rc));
	return 0;
}

int api_check(const struct api_config *cfg, struct orch_err *err)
{
	if (cfg->no_auth && ((!cfg->http.off && !auth_is_loopback(cfg->http.addr)) ||
			     (!cfg->ws.off && !auth_is_loopback(cfg->ws.addr))))
		return err_set(err, EACCES, "--no-auth is refused on a non-loopback address");
	if (!cfg->http.off && !cfg->ws.off && cfg->http.port == cfg->ws.port &&
	    strcmp(cfg->http.addr, cfg->ws.addr) == 0)
		return err_set(err, EINVAL, "--http and --ws need different addresses");
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
		return err_set(err, EINVAL, "--tls-cert and --tls-key go together");
	/* the token too: a daemon without its API must not start quietly */
	char token[AUTH_TOKEN_HEX + 1];
	if (!cfg->no_auth && auth_load_token(cfg->token_file, true, token, err))
		return -err->errnum;
	int rc = check_bind(&cfg->http, "--http", err);
	return rc ? rc : check_bind(&cfg->ws, "--ws", err);
}

struct api *api_of(struct lws *wsi)
{
	return lws_context_user(lws_get_context(wsi));
}

static int header(struct lws *wsi, enum lws_token_indexes tok, char *out, size_t size)
{
	out[0] = '\0';
	int n = lws_hdr_total_length(wsi, tok);
	if (n <= 0 || (size_t)n >= size)
		return n <= 0 ? 0 : -1;
	return lws_hdr_copy(wsi, out, (int)size, tok) < 0 ? -1 : n;
}

/* Refuses an upgrade with an HTTP/1.1 status and the error object (lws's own
 * helper answers HTTP/1.0 with HTML here, which clients reject). */
int api_refuse_upgrade(struct lws *wsi, int errnum, int status, const char *why)
{
	struct orch_err err;
	struct buf body = BUF_INIT, msg = BUF_INIT;
	err_set(&err, errnum, "%s", why);
	err_render_status(&err, "", status, &body);
	const char *text = status == 400 ? "Bad Request" : status == 401 ? "Unauthorized"
			 : status == 404 ? "Not Found" : "Forbidden";
	buf_reserve(&msg, LWS_PRE);
	msg.len = LWS_PRE;
	buf_printf(&msg, "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
			 "content-length: %zu\r\nconnection: close\r\n\r\n%s",
		   status, text, body.len, body.data);
	lws_write(wsi, (unsigned char *)msg.data + LWS_PRE, msg.len - LWS_PRE, LWS_WRITE_HTTP_HEADERS);
	buf_free(&body);
	buf_free(&msg);
	return 1;
}

int api_admit(struct api *a, struct lws *wsi, const struct api_listen *listener, bool websocket,
	      char *why, size_t whysize)
{
	char host[256], origin[256], authz[256], tok[128];
	if (header(wsi, WSI_TOKEN_HOST, host, sizeof host) <= 0 ||
	    !auth_host_ok(host, listener->addr, listener->port)) {
		snprintf(why, whysize, "Host \"%s\" is not this listener's own name", host);
		return 403;
	}
	if (header(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin) < 0) {
		snprintf(why, whysize, "Origin header too long");
		return 403;
	}
	if (origin[0]) {
		/* A page of ours may be served from either listener. */
		int ports[2] = {a->cfg.http.off ? 0 : a->cfg.http.port, a->cfg.ws.off ? 0 : a->cfg.ws.port};
		if (!auth_origin_ok(origin, listener->addr, ports, 2)) {
			snprintf(why, whysize, "Origin \"%s\" is not this server's own", origin);
			return 403;
		}
	}
	(void)websocket;
	if (a->cfg.no_auth)
		return 0;
	size_t len = 0;
	const char *given = NULL;
	if (header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof authz) > 0)
		given = auth_bearer(authz, &len);
	else if (lws_get_urlarg_by_name(wsi, "token=", tok, sizeof tok)) {
		given = lws_get_urlarg_by_name(wsi, "token=", tok, sizeof tok);
		len = strlen(given);
	}
	if (!given || !auth_token_equal(a->token, given, len)) {
		snprintf(why, whysize, given ? "the token is not valid"
					     : "no token: send Authorization: Bearer TOKEN");
		return 401;
	}
	return 0;
}

int api_read(struct api *a, const char *path, struct buf *out, bool *is_json,
	     struct api_log *log)
{
	struct node n;
	char resolved[600];
	struct orch_err err = {0};
	int rc = node_resolve_api(a->o, path, &n, resolved, sizeof resolved);
	*is_json = true;
	log->fd = -1;
	if (rc) {
		err_set(&err, ENOENT, "no such file: %s", path);
	} else if (node_type(&n) == NODE_DIR) {
		rc = node_render_listing(a->o, &n, resolved, out);
	} else if (node_type(&n) == NODE_LINK) {
		rc = node_readlink(a->o, &n, out);
		buf_putc(out, '\n');
		*is_json = false;
	} else if (node_flags(&n) & NODE_LOG) {
		/* never read whole: the transports send it from the file in pieces */
		char *file;
		struct stat st;
		*is_json = false;
		rc = node_log_path(a->o, &n, &file);
		if (!rc) {
			log->fd = open(file, O_RDONLY | O_CLOEXEC);
			free(file);
			if (log->fd >= 0 && fstat(log->fd, &st) == 0) {
				log->len = (size_t)st.st_size;
			} else {
				if (log->fd >= 0)
					close(log->fd);
				log->fd = -1;
				rc = -EIO;
			}
		}
	} else if (node_flags(&n) & NODE_DOC) {
		rc = node_render_cached(a->o, &n, out);
		*is_json = (node_flags(&n) & NODE_JSON) != 0;
	} else {
		/* a control file: its content is the result of a write, per descriptor */
		err_set(&err, EACCES, "%s is a control file: POST to it", resolved);
		rc = -ENOTSUP;   /* the caller answers 405 */
	}
	if (rc && !err.errnum)
		err_set(&err, -rc, "%s: %s", path, strerror(-rc));
	if (rc) {
		buf_reset(out);
		err_render_status(&err, path, rc == -ENOTSUP ? 405 : err_http_status(err.errnum), out);
	}
	return rc;
}

int api_write(struct api *a, const char *path, const char *body, size_t len, struct buf *out)
{
	struct node n;
	char resolved[600];
	/* a control file by its own name; /api/state and the like still resolve,
	 * so a POST to them is refused as a read-only file (405), not unknown */
	if (node_resolve(a->o, path, &n) != 0 &&
	    node_resolve_api(a->o, path, &n, resolved, sizeof resolved) != 0) {
		struct orch_err err;
		err_set(&err, ENOENT, "no such file: %s", path);
		err_render(&err, path, out);
		return -ENOENT;
	}
	if (!(node_flags(&n) & NODE_CTL))
		/* the mount's errno for a write to a read-only file; over HTTP it
		 * is the wrong method as well */
		return node_write_error_status(a->o, path, EACCES, 405,
					       "read-only: only control files take POST", out);
	return node_write(a->o, &n, path, body, len, NULL, out);
}

/* --- threads --- */

static void telemetry_tick(lws_sorted_usec_list_t *sul)
{
	/* the list node is a member of struct api, whose alignment it has */
	struct api *a = (struct api *)(void *)((char *)sul - offsetof(struct api, sul_telemetry));
	buf_reset(&a->telemetry_frame);
	cJSON *f = cJSON_CreateObject();
	cJSON_AddStringToObject(f, "channel", "telemetry");
	json_add_time(f, "ts", time_now_ms());
	cJSON_AddItemToObject(f, "data", tm_json(a->o->tm));
	json_emit(f, &a->telemetry_frame);
	a->telemetry_gen++;
	uint64_t depths[TM_WS_DEPTHS];
	size_t n = api_ws_check_lag(a, depths, TM_WS_DEPTHS);
	tm_ws(a->o->tm, a->ws_clients, a->ws_max_queue, a->ws_sent, a->ws_dropped, depths, n);
	a->ws_max_queue = 0;   /* the deepest queue of each period */
	lws_callback_on_writable_all_protocol(a->ctx, &api_ws_protocol);
	lws_callback_on_writable_all_protocol(a->ctx, &api_http_protocol);
	lws_sul_schedule(a->ctx, 0, &a->sul_telemetry, telemetry_tick,
			 LWS_US_PER_SEC / (a->cfg.telemetry_hz > 0 ? a->cfg.telemetry_hz : 10));
}

static void *service_main(void *arg)
{
	struct api *a = arg;
	pthread_setname_np(pthread_self(), "orchfs-api");
	lws_sul_schedule(a->ctx, 0, &a->sul_telemetry, telemetry_tick, LWS_US_PER_SEC / 10);
	while (!__atomic_load_n(&a->stopping, __ATOMIC_ACQUIRE))
		if (lws_service(a->ctx, 0) < 0)
			break;
	return NULL;
}

static void *pump_main(void *arg)
{
	struct api *a = arg;
	pthread_setname_np(pthread_self(), "orchfs-api-pump");
	uint64_t seen = events_committed(&a->o->events);
	while (!__atomic_load_n(&a->stopping, __ATOMIC_ACQUIRE)) {
		uint64_t now = events_wait(&a->o->events, seen, 1000);
		if (now > seen) {
			seen = now;
			lws_cancel_service(a->ctx);
		}
	}
	return NULL;
}

static struct lws_vhost *make_vhost(struct api *a, const char *name, const struct api_listen *l,
				    const struct lws_protocols *protocols)
{
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.vhost_name = name;
	info.port = l->port;
	info.iface = l->addr;
	info.protocols = protocols;
	/* a text frame that is not UTF-8 is closed with 1007, as RFC 6455 asks */
	info.options = LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
		       LWS_SERVER_OPTION_VALIDATE_UTF8;
	if (strchr(l->addr, ':') == NULL)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	if (a->cfg.tls_cert) {
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = a->cfg.tls_cert;
		info.ssl_private_key_filepath = a->cfg.tls_key;
	}
	info.keepalive_timeout = 30;
	info.timeout_secs = 30;
	return lws_create_vhost(a->ctx, &info);
}

int api_start(struct orch *o, const struct api_config *cfg, struct api **out, struct orch_err *err)
{
	struct api *a = xcalloc(1, sizeof *a);
	a->o = o;
	a->cfg = *cfg;
	if (!a->cfg.max_body)
		a->cfg.max_body = 1u << 20;
	if (!a->cfg.ws_queue_max)
		a->cfg.ws_queue_max = 4u << 20;
	if (!a->cfg.heartbeat_s)
		a->cfg.heartbeat_s = 10;
	if (!cfg->no_auth && auth_load_token(cfg->token_file, true, a->token, err)) {
		free(a);
		return -err->errnum;
	}
	lws_set_log_level(LLL_ERR, NULL);
	struct lws_context_creation_info info;
	memset(&info, 0, sizeof info);
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (cfg->tls_cert)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.user = a;
	a->ctx = lws_create_context(&info);
	if (!a->ctx) {
		free(a);
		return err_set(err, EIO, "cannot create the API's context");
	}
	/* each vhost's list ends with an empty entry; lws keeps the pointers */
	a->protocols_http[0] = api_http_protocol;
	a->protocols_ws[0] = api_ws_protocol;
	struct lws_protocols *hp = a->protocols_http, *wp = a->protocols_ws;
	if ((!cfg->http.off && !(a->http_vh = make_vhost(a, "http", &cfg->http, hp))) ||
	    (!cfg->ws.off && !(a->ws_vh = make_vhost(a, "ws", &cfg->ws, wp)))) {
		lws_context_destroy(a->ctx);
		free(a);
		return err_set(err, EBUSY, "cannot listen on the API addresses");
	}
	if (pthread_create(&a->service, NULL, service_main, a) == 0)
		a->service_started = true;
	if (pthread_create(&a->pump, NULL, pump_main, a) == 0)
		a->pump_started = true;
	*out = a;
	return 0;
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	__atomic_store_n(&a->stopping, true, __ATOMIC_RELEASE);
	events_wake_all(&a->o->events);
	lws_cancel_service(a->ctx);
	if (a->pump_started)
		pthread_join(a->pump, NULL);
	if (a->service_started)
		pthread_join(a->service, NULL);
	lws_context_destroy(a->ctx);
	buf_free(&a->telemetry_frame);
	free(a);
}
