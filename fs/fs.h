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
/* Hands the fs the events pump and the notifier once they run (NULL = none). */
void fs_attach(struct fs *fs, struct stream_hub *hub, struct notifier *notifier);
void fs_destroy(struct fs *fs);
const struct fuse_lowlevel_ops *fs_ops(void);

#endif
