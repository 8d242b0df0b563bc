/* client: how the orchfs command reaches a daemon, through the files of a
 * mount or the same paths over HTTP, with the same answers and the same
 * error objects either way (README, "The orchfs command").
 *   orchfs ps                                   # ~/orchfs, or $ORCHFS_MOUNT
 *   orchfs --url http://127.0.0.1:8999 ps       # the token: --token-file, $ORCHFS_TOKEN
 */
#ifndef ORCHFS_CLIENT_H
#define ORCHFS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"

struct client {
	char *mount;          /* a mount's root, or NULL: the API at host:port */
	char *host, *port;
	char *token;          /* the bearer token, or NULL (a daemon run with --no-auth) */
};

/* A client of the daemon serving mount (its files must be orchfs's: -ENOTCONN
 * with a message saying how to start one if not). */
int client_use_mount(struct client *c, const char *mount, struct orch_err *err);
/* A client of the API at url (http://HOST:PORT). */
int client_use_url(struct client *c, const char *url, const char *token, struct orch_err *err);
void client_close(struct client *c);

/* A document or a file into out: 0, or -errno with the daemon's message. */
int client_read(struct client *c, const char *path, struct buf *out, struct orch_err *err);
/* A worker's log from offset on: what came since a follower's last read. */
int client_read_from(struct client *c, const char *path, uint64_t offset, struct buf *out,
		     struct orch_err *err);
/* A control write; what the daemon answers (the new worker, the new track) in reply. */
int client_write(struct client *c, const char *path, const char *body, size_t len, struct buf *reply,
		 struct orch_err *err);

#define CLIENT_SINCE_NOW UINT64_MAX

/* The event stream from after seq since (or from now), of channels ("a,b";
 * NULL: all). */
struct client_stream;
int client_events(struct client *c, uint64_t since, const char *channels, struct client_stream **out,
		  struct orch_err *err);
/* The next event's JSON line, without its newline: 1; 0 when the stream
 * ended (the daemon stopped); -errno. Blocks until there is one. */
int client_stream_next(struct client_stream *s, struct buf *line, struct orch_err *err);
void client_stream_close(struct client_stream *s);

/* The error an answer carries ({"error":{"errno","message"}}): its errno
 * (status's when the object is not there), its message into err. */
int client_error_of(const char *body, size_t len, int status, struct orch_err *err);

#endif
