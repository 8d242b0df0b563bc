/* internal: what http.c, ws.c and server.c share; not for the rest of orchfs. */
#ifndef ORCHFS_API_INTERNAL_H
#define ORCHFS_API_INTERNAL_H

#include <libwebsockets.h>
#include <pthread.h>

#include "api.h"
#include "auth.h"
#include "buf.h"

struct api {
	struct orch *o;
	struct api_config cfg;
	char token[AUTH_TOKEN_HEX + 1];
	struct lws_context *ctx;
	struct lws_vhost *http_vh, *ws_vh;
	pthread_t service, pump;
	bool service_started, pump_started;
	bool stopping;                /* read and set with __atomic */

	/* lws thread only: */
	struct buf telemetry_frame;   /* the latest frame, built once for every reader */
	uint64_t telemetry_gen;       /* bumps with each frame */
	lws_sorted_usec_list_t sul_telemetry;   /* also wakes streams for heartbeats */
	unsigned ws_clients;
	uint64_t ws_sent, ws_dropped, ws_max_queue;
	void *ws_list;                /* ws.c's list of clients */
	struct lws_protocols protocols_http[2], protocols_ws[2];
};

extern const struct lws_protocols api_http_protocol;
extern const struct lws_protocols api_ws_protocol;

struct api *api_of(struct lws *wsi);
/* Host, Origin and token checks shared by HTTP and WebSocket: 0, or the HTTP
 * status to refuse with (401, 403) and a message. */
/* Answers an upgrade request with an HTTP/1.1 error object (status 400, 401,
 * 403 or 404) and returns 1, as LWS_CALLBACK_HTTP_CONFIRM_UPGRADE wants. */
int api_refuse_upgrade(struct lws *wsi, int errnum, int status, const char *why);
int api_admit(struct api *a, struct lws *wsi, const struct api_listen *listener, bool websocket,
	      char *why, size_t whysize);
/* Marks WebSocket clients lagging past --ws-queue-max for closing (1013);
 * fills depths (at most max) with each client's lag in bytes, returns how many. */
size_t api_ws_check_lag(struct api *a, uint64_t *depths, size_t max);
/* A worker's log, as api_read hands it over: its file, open (fd -1: P is
 * not a log), and its length then. The caller sends it and closes fd. */
struct api_log {
	int fd;
	size_t len;
};
/* Renders what GET /api/P returns; -errno with the error object in out. A
 * log is not rendered: log gets its file instead (out stays empty). */
int api_read(struct api *a, const char *path, struct buf *out, bool *is_json,
	     struct api_log *log);
/* Writes body to control file P; result or error object in out. */
int api_write(struct api *a, const char *path, const char *body, size_t len, struct buf *out);

#endif
