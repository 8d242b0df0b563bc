/* fs: the FUSE (low-level API) front end. It maps inodes to namespace paths and
 * translates each operation into the node table of bridge/nodes.h; it holds
 * no state of the model itself. */
#ifndef ORCHFS_FS_H
#define ORCHFS_FS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "orch.h"

struct fs;
struct stream_hub;
struct notifier;

struct fs *fs_create(struct orch *o);
/* Hands the fs the session, the events pump and the notifier once they run
 * (NULL = none); from then until fs_detach, each committed change drops the
 * kernel's copies of what it touched before anyone is told of it. */
void fs_attach(struct fs *fs, struct fuse_session *se, struct stream_hub *hub,
	       struct notifier *notifier);
/* Could anyone be told of a change to path (relative to the root)? Only if
 * the kernel holds the file or its directory (an inotify watch holds what it
 * watches; a file nobody looked up, in a directory nobody looked up, has
 * none): else announcing it would cost calls on the mount for nobody. */
bool fs_kernel_may_watch(struct fs *fs, const char *path);
/* Drops the kernel's entry for path: its inode is forgotten unless someone
 * holds it (a watch, an open file, a working directory). */
void fs_let_go(struct fs *fs, const char *path);
/* Before the session goes: no more calls on it. */
void fs_detach(struct fs *fs);
void fs_destroy(struct fs *fs);
const struct fuse_lowlevel_ops *fs_ops(void);

#endif
