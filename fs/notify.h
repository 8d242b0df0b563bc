/* notify: inotify for a FUSE mount. The kernel raises no inotify event for a
 * change made inside the daemon, so the notifier has ordinary calls made on
 * the mount: truncate(path, size) for IN_MODIFY, mkdir/mknod for IN_CREATE,
 * rmdir/unlink for IN_DELETE, by a helper process whose id the FUSE handlers
 * recognise, turning those calls into no-ops. It wakes on each commit and
 * announces the files the node table says the new events touched (what a
 * pass is making calls for, the next pass announces: the last change always
 * is), and polls running workers' logs so `tail -f` and inotifywait see them
 * grow. It never runs inside a FUSE handler, which would deadlock.
 *   inotifywait -m -r ~/orchfs/mma &; echo 'sleep 1' > ~/orchfs/mma/workers/spawn */
#ifndef ORCHFS_NOTIFY_H
#define ORCHFS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "fs.h"

enum notify_intent { NOTIFY_NONE, NOTIFY_CREATE, NOTIFY_DELETE, NOTIFY_MODIFY };

struct notifier;

/* Starts the thread (after the mount is up and the loop is about to run);
 * fs says which paths anyone could be watching. */
struct notifier *notifier_start(struct orch *o, struct fs *fs, const char *mount);
void notifier_stop(struct notifier *n);
/* Waits (at most timeout_ms) until every event up to seq is announced. */
void notifier_wait(struct notifier *n, uint64_t seq, int timeout_ms);
/* The body of the helper process (orchfs --notify-hand MOUNT): makes the calls
 * the notifier asks for over stdin, answering each errno on stdout. */
int notifier_hand_main(const char *mount);
/* Is req a call made by the notifier's helper? If so, *path (relative to the
 * mount's root, valid until the call returns) is the path it is acting on. */
bool notifier_owns(struct notifier *n, fuse_req_t req, enum notify_intent *intent,
		   const char **path);

#endif
