/* err: one error type for every failed command, and the one builder of the
 * error object (README, "Errors"), shared by the mount and the HTTP/WebSocket API:
 *   {"error":{"status":409,"errno":"ELOOP","message":"...","path":"mma/dag/mutate",
 *             "ts":"2026-12-06T14:40:00.123Z"}}
 */
#ifndef ORCHFS_ERR_H
#define ORCHFS_ERR_H

#include "buf.h"

struct orch_err {
	int errnum;          /* positive errno; 0 = no error */
	char message[512];
};

/* Records errnum and a formatted message; returns -errnum so handlers can
 * `return err_set(e, EINVAL, "...")`. */
int err_set(struct orch_err *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

const char *err_name(int errnum);        /* "ELOOP" */
int err_from_name(const char *name);     /* ELOOP, or 0 for a name not ours */
int err_http_status(int errnum);         /* 409 */
/* Appends the error object (one line, newline-terminated) for a failure at path. */
void err_render(const struct orch_err *e, const char *path, struct buf *out);
/* The same with a status the transport chose (401, 405, 411…). */
void err_render_status(const struct orch_err *e, const char *path, int status, struct buf *out);

#endif
