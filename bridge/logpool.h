/* logpool: worker log files made ahead of need, by a thread of their own.
 * Making a file is the costliest step of a start (an inode to allocate: on
 * ext4 it was half the time of starting `true`); ids are handed out in order
 * and never reused, so the files of the next ids can be made before anyone
 * asks, on another CPU, and a start only takes an open descriptor.
 *   ls STATE_DIR/logs    # empty N.log past the last worker: made ahead */
#ifndef ORCHFS_LOGPOOL_H
#define ORCHFS_LOGPOOL_H

struct log_pool;

/* Makes DIR/<id>.log for first_id and the ids after it, a few ahead of the
 * last one taken. NULL when the thread cannot start (takes then make the
 * file themselves). */
struct log_pool *logpool_start(const char *dir, int first_id);
/* Ends the thread; the files made ahead and not taken are removed. */
void logpool_stop(struct log_pool *p);
/* An open descriptor (write, append, close-on-exec) on DIR/<id>.log, empty:
 * made ahead, or made now at path when the pool had not got to it (p may be
 * NULL). -errno when the file cannot be made. */
int logpool_take(struct log_pool *p, int id, const char *path);

#endif
