/* server: the libwebsockets context with its two listeners, the service
 * thread, and the pump that wakes it when events are committed. Other threads
 * touch lws only through lws_cancel_service(), the one call lws allows them. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "request.h"
#include "telemetry.h"

/* How often the pump looks for a stream while there is none. */
#define API_PUMP_IDLE_NS (20 * 1000 * 1000)

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

/* A header's value, whole (NULL when absent); the caller frees it. */
static char *header_dup(struct lws *wsi, enum lws_token_indexes tok)
{
	int n = lws_hdr_total_length(wsi, tok);
	if (n <= 0)
		return NULL;
	char *v = xmalloc((size_t)n + 1);
	if (lws_hdr_copy(wsi, v, n + 1, tok) < 0)
		v[0] = '\0';
	return v;
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

static struct req_site site_of(struct api *a, const struct api_listen *listener)
{
	return (struct req_site){
		.addr = listener->addr, .port = listener->port,
		.ports = {a->cfg.http.off ? 0 : a->cfg.http.port, a->cfg.ws.off ? 0 : a->cfg.ws.port},
		.token = a->cfg.no_auth ? NULL : a->token,
		.allow_origins = (const char *const *)a->cfg.allow_origins,
		.n_allow_origins = a->cfg.n_allow_origins,
	};
}

/* Who was refused and why; never what they sent as a token. */
static void log_refused(struct api *a, struct lws *wsi, const struct api_listen *listener,
			int status, const char *why)
{
	char peer[64] = "";
	lws_get_peer_simple(wsi, peer, sizeof peer);
	orch_log(a->o, ORCH_LOG_WARN, "%s: refused %d to %s: %s",
		 listener == &a->cfg.http ? "http" : "ws", status, peer[0] ? peer : "?", why);
}

int api_preflight(struct api *a, struct lws *wsi, char *why, size_t whysize)
{
	struct req_site site = site_of(a, &a->cfg.http);
	struct req_headers h = {
		.host = header_dup(wsi, WSI_TOKEN_HOST),
		.origin = header_dup(wsi, WSI_TOKEN_ORIGIN),
	};
	int status = req_preflight(&site, &h, why, whysize);
	free((char *)h.host);
	free((char *)h.origin);
	if (status == 204)
		return 0;
	log_refused(a, wsi, &a->cfg.http, status, why);
	return status;
}

void api_cors_origin(struct api *a, struct lws *wsi, char *out, size_t size)
{
	out[0] = '\0';
	if (!a->cfg.n_allow_origins)
		return;   /* the usual case: no header to copy */
	struct req_site site = site_of(a, &a->cfg.http);
	struct req_headers h = {.origin = header_dup(wsi, WSI_TOKEN_ORIGIN)};
	const char *allowed = req_cors_origin(&site, &h);
	snprintf(out, size, "%s", allowed ? allowed : "");
	free((char *)h.origin);
}

/* page: the dashboard's files, which hold no secret, so no token is asked
 * (what they call needs it); Host and Origin are checked all the same. */
static int admit(struct api *a, struct lws *wsi, const struct api_listen *listener, bool page,
		 int *worker, char *why, size_t whysize)
{
	char tok[128];
	struct req_site site = site_of(a, listener);
	struct req_headers h = {
		.host = header_dup(wsi, WSI_TOKEN_HOST),
		.origin = header_dup(wsi, WSI_TOKEN_ORIGIN),
	};
	if (page) {
		site.token = NULL;
	} else {
		h.authorization = header_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
		h.token_arg = lws_get_urlarg_by_name(wsi, "token=", tok, sizeof tok);
	}
	int refuse = req_admit(&site, &h, worker, why, whysize);
	if (refuse)
		log_refused(a, wsi, listener, refuse, why);
	free((char *)h.host);
	free((char *)h.origin);
	free((char *)h.authorization);
	return refuse;
}

int api_admit(struct api *a, struct lws *wsi, const struct api_listen *listener, int *worker,
	      char *why, size_t whysize)
{
	return admit(a, wsi, listener, false, worker, why, whysize);
}

int api_admit_page(struct api *a, struct lws *wsi, char *why, size_t whysize)
{
	int worker;
	return admit(a, wsi, &a->cfg.http, true, &worker, why, whysize);
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
	uint64_t deepest;
	size_t n = api_ws_check_lag(a, depths, TM_WS_DEPTHS, &deepest);
	tm_ws(a->o->tm, a->ws_clients, deepest, a->ws_sent, a->ws_dropped, depths, n);
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
		/* Nobody to tell: neither thread wakes for each event. A stream
		 * that opens sends its backlog by itself, and the backlog holds
		 * what was committed before it counted itself in, so `committed`
		 * is read first. */
		uint64_t committed = events_committed(&a->o->events);
		if (!__atomic_load_n(&a->streams, __ATOMIC_SEQ_CST)) {
			seen = committed;
			nanosleep(&(struct timespec){0, API_PUMP_IDLE_NS}, NULL);
			continue;
		}
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
		/* HTTP/1.1 only: the answers are written as HTTP/1.1 (headers and
		 * body in one write, sendfile), and a client offered h2 (curl, every
		 * browser) took it and was refused, its request having no Host */
		info.alpn = "http/1.1";
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
	if (!a->cfg.ws_queue_soft)
		a->cfg.ws_queue_soft = 1u << 20;
	if (a->cfg.ws_queue_soft > a->cfg.ws_queue_max)
		a->cfg.ws_queue_soft = a->cfg.ws_queue_max;
	if (!a->cfg.ws_queue_window_s)
		a->cfg.ws_queue_window_s = 10;
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
	free(a->piece);
	free(a);
}
