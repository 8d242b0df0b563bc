/* telemetry: the daemon's own vital signs (README, "The namespace": system/telemetry.json), cheap to record
 * from any thread: counters are atomics or behind the telemetry's own lock,
 * and latency percentiles come from bounded rings of recent samples. */
#ifndef ORCHFS_TELEMETRY_H
#define ORCHFS_TELEMETRY_H

#include <stdint.h>

#include "json.h"

enum tm_op {
	TM_LOOKUP, TM_GETATTR, TM_SETATTR, TM_READLINK, TM_OPEN, TM_READ, TM_WRITE,
	TM_RELEASE, TM_OPENDIR, TM_READDIR, TM_OTHER, TM_NOPS
};

struct telemetry;

struct telemetry *tm_create(void);
void tm_destroy(struct telemetry *tm);
void tm_tick(struct telemetry *tm, int64_t duration_ns);
void tm_fuse_op(struct telemetry *tm, enum tm_op op, int64_t duration_ns, int failed);
void tm_http(struct telemetry *tm, int failed);
void tm_store_write(struct telemetry *tm, uint64_t bytes);
/* --durable: one sync of the journal, however many commits it made durable. */
void tm_store_sync(struct telemetry *tm);
#define TM_WS_DEPTHS 64
/* The API's WebSocket side: clients now, the deepest client queue in bytes,
 * frames sent, clients dropped for lagging, and each client's queue in bytes
 * (the first TM_WS_DEPTHS of them). */
void tm_ws(struct telemetry *tm, unsigned clients, uint64_t max_queue_bytes, uint64_t sent,
	   uint64_t dropped, const uint64_t *depths, size_t ndepths);
/* A fresh document; the caller adds what only it knows (workers, events). */
cJSON *tm_json(struct telemetry *tm);

#endif
