/* auth: the API's bearer token and the checks on who may talk to it.
 * The token lives in STATE_DIR/token (made at first start: mode 0600, 32
 * random bytes in hex) or in --token-file. Requests carry
 * `Authorization: Bearer TOKEN` (or ?token= for browsers' EventSource and
 * WebSocket); a Host or Origin naming anything but our own listener is refused,
 * which stops DNS rebinding and cross-site pages.
 *   curl -H "Authorization: Bearer $(cat ~/.local/state/orchfs/token)" 127.0.0.1:8999/api/state */
#ifndef ORCHFS_AUTH_H
#define ORCHFS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define AUTH_TOKEN_HEX 64

/* Reads the token from path; when create is set and the file does not exist,
 * makes it first (0600). Refuses a file others may read. */
int auth_load_token(const char *path, bool create, char token[AUTH_TOKEN_HEX + 1],
		    struct orch_err *err);
/* Constant time in the length of the expected token. */
bool auth_token_equal(const char *expected, const char *given, size_t given_len);
/* A worker's own token, "w<ID>.<hex HMAC-SHA256 of "orchfs worker <ID>" under
 * the daemon's token>": it names its worker, and only the daemon can make it,
 * with nothing to store. */
#define AUTH_WORKER_TOKEN_MAX (AUTH_TOKEN_HEX + 16)
void auth_worker_token(const char *secret, int worker, char out[AUTH_WORKER_TOKEN_MAX]);
/* Whose token given is: 0 the daemon's own, N > 0 worker N's, -1 nobody's. */
int auth_token_owner(const char *secret, const char *given, size_t len);
/* "Bearer X" -> X; NULL when the header is not of that form. */
const char *auth_bearer(const char *header, size_t *len);
/* Is addr ("127.0.0.1", "::1", "localhost", "0.0.0.0"…) a loopback address? */
bool auth_is_loopback(const char *addr);
/* host: a Host header ("127.0.0.1:8999", "localhost:8999", "[::1]:8999").
 * It names us when its port is ours and its name is our address, or a
 * loopback name while we listen on loopback. */
bool auth_host_ok(const char *host, const char *listen_addr, int port);
/* origin: "http://127.0.0.1:8999"; ours when its host part passes auth_host_ok
 * for one of our listeners (ports[0..n)). */
bool auth_origin_ok(const char *origin, const char *listen_addr, const int *ports, size_t n);
/* An --allow-origin value: scheme://host[:port] with scheme http or https, a
 * host name or address ([v6] bracketed), a port 1..65535, and nothing after
 * (no path, not even "/"), as a browser sends it. false, and why, if not. */
bool auth_origin_valid(const char *origin, char *why, size_t whysize);
/* origin, as sent, if it is one of list[0..n) (case-insensitively, as
 * browsers may differ in the case of a name); else NULL. */
const char *auth_origin_listed(const char *origin, const char *const *list, size_t n);

#endif
