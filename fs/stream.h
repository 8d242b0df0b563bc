/* stream: the `events` file. Each open is an independent reader that replays
 * and follows committed events as JSON lines. Reads that find nothing new are
 * parked and answered later by one pump thread (the low-level API lets a
 * request be answered from any thread), so 200 readers tie up no FUSE thread;
 * Ctrl-C answers a parked read with EINTR at once.
 *   exec 3<>events; echo 'since 40' >&3; echo 'channels dag,workers' >&3; cat <&3 */
#ifndef ORCHFS_STREAM_H
#define ORCHFS_STREAM_H

#include "fs.h"

struct stream_hub;
struct fs_stream;

/* Starts the pump thread (after daemonizing). */
struct stream_hub *stream_hub_start(struct orch *o);
/* Answers every parked read with EOF and joins the pump. */
void stream_hub_stop(struct stream_hub *hub);

struct fs_stream *stream_open(struct stream_hub *hub);
/* "since N" and "channels a,b" (one a line, or both in one write) before the
 * first read; returns bytes taken or -errno, with the error object in result. */
int stream_write(struct stream_hub *hub, struct fs_stream *s, const char *data, size_t len,
		 struct buf *result);
/* Replies now (events ready, or an error) or parks req until events arrive. */
void stream_read(struct stream_hub *hub, struct fs_stream *s, fuse_req_t req, size_t size);
void stream_release(struct stream_hub *hub, struct fs_stream *s);

#endif
