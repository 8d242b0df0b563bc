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
	unsigned streams;             /* __atomic: WebSocket clients and SSE streams open */

	/* lws thread only: */
	unsigned char *piece;         /* where each HTTP write is made (http.c) */
	struct buf telemetry_frame;   /* the latest frame, built once for every reader */
	uint64_t telemetry_gen;       /* bumps with each frame */
	lws_sorted_usec_list_t sul_telemetry;   /* also wakes streams for heartbeats */
	unsigned ws_clients;
	uint64_t ws_sent, ws_dropped;
	void *ws_list;                /* ws.c's list of clients */
	struct lws_protocols protocols_http[2], protocols_ws[2];
};

extern const struct lws_protocols api_http_protocol;
extern const struct lws_protocols api_ws_protocol;

struct api *api_of(struct lws *wsi);
/* Answers an upgrade request with an HTTP/1.1 error object (status 400, 401,
 * 403 or 404) and returns 1, as LWS_CALLBACK_HTTP_CONFIRM_UPGRADE wants. */
int api_refuse_upgrade(struct lws *wsi, int errnum, int status, const char *why);
/* Host, Origin and token checks shared by HTTP and WebSocket (req_admit): 0,
 * or the HTTP status to refuse with (401, 403) and why. */
int api_admit(struct api *a, struct lws *wsi, const struct api_listen *listener, int *worker,
	      char *why, size_t whysize);
/* A CORS preflight (OPTIONS): 0 when it may go on, else 403 and why. */
int api_preflight(struct api *a, struct lws *wsi, char *why, size_t whysize);
/* Copies the request's Origin into out when --allow-origin lists it (its
 * answer then carries Access-Control-Allow-Origin); else out is "". */
void api_cors_origin(struct api *a, struct lws *wsi, char *out, size_t size);
/* Marks WebSocket clients too slow for closing (1013; api_config says when);
 * fills depths (at most max) with each client's lag in bytes and deepest with
 * the largest, returns how many. */
size_t api_ws_check_lag(struct api *a, uint64_t *depths, size_t max, uint64_t *deepest);
/* Like api_admit for the dashboard's files, which need no token: 0, or 403
 * for a Host (or Origin) that is not ours. */
int api_admit_page(struct api *a, struct lws *wsi, char *why, size_t whysize);

/* web.c: the dashboard's files. web_open opens what uri names under root (a
 * realpath; NULL: no dashboard) as a regular file: 0 with *fd and its length,
 * else -ENOENT, whatever the reason (missing, a directory, "..", a symlink
 * out of the root). */
int web_open(const char *root, const char *uri, int *fd, size_t *len);
const char *web_content_type(const char *path);
/* /config.json: where the page finds the WebSocket listener. */
void web_config(const struct api *a, struct buf *out);

#endif
