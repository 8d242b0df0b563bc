/* api: the namespace over HTTP, Server-Sent Events and WebSocket, served by
 * libwebsockets on one service thread (README, "Remote: HTTP, SSE and WebSocket").
 *   T=$(cat ~/.local/state/orchfs/token)
 *   curl -H "Authorization: Bearer $T" http://127.0.0.1:8999/api/mma/workers
 *   curl -H "Authorization: Bearer $T" -d 'sleep 5' http://127.0.0.1:8999/api/mma/workers/spawn
 *   curl -N -H "Authorization: Bearer $T" 'http://127.0.0.1:8999/api/events?since=0'
 * It has no routes of its own: GET /api/P renders node P, POST /api/P writes
 * the body to control file P, through bridge/nodes.h like the mount. */
#ifndef ORCHFS_API_H
#define ORCHFS_API_H

#include <stdbool.h>
#include <stddef.h>

#include "orch.h"

struct api_listen {
	bool off;
	char addr[64];       /* "127.0.0.1", "::1", "0.0.0.0" */
	int port;
};

struct api_config {
	struct api_listen http, ws;
	const char *token_file;   /* NULL with no_auth */
	bool no_auth;
	const char *tls_cert, *tls_key;
	size_t max_body;          /* 413 above; default 1 MiB */
	/* A WebSocket client lagging (events not sent, replies past 1 MiB, and
	 * what its socket holds unsent) more than ws_queue_max bytes while its
	 * socket takes no more, or more than ws_queue_soft for ws_queue_window_s
	 * seconds on end, is closed with 1013. Defaults 4 MiB, 1 MiB, 10 s. */
	size_t ws_queue_max, ws_queue_soft;
	int ws_queue_window_s;
	int telemetry_hz;
	int heartbeat_s;          /* SSE comment every this many seconds; default 10 */
	/* --allow-origin: pages of the user's own (http://localhost:3000) that
	 * may call the API: their WebSocket upgrades are accepted, HTTP answers
	 * them with CORS headers, and their preflights with 204 */
	const char **allow_origins;
	size_t n_allow_origins;
	/* --web-root: the dashboard's files, a realpath from api_web_root (NULL:
	 * no dashboard, and paths outside /api/ are 404) */
	const char *web_root;
};

struct api;

/* "127.0.0.1:8999", "[::1]:9000", "off". */
int api_parse_listen(const char *s, struct api_listen *out, struct orch_err *err);
/* Binds and releases each address, so a port in use is reported before the
 * daemon detaches. */
int api_check(const struct api_config *cfg, struct orch_err *err);
/* The dashboard's folder as served: its realpath in *out (the caller frees
 * it), or an error when it is not there or has no index.html. */
int api_web_root(const char *dir, char **out, struct orch_err *err);
int api_start(struct orch *o, const struct api_config *cfg, struct api **out, struct orch_err *err);
void api_stop(struct api *a);

#endif
