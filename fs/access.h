/* access: what an ordinary user needs before orchfs can mount (README, "The
 * daemon"): /dev/fuse open read-write, and a setuid fusermount3 in PATH.
 *   $ orchfs ~/orchfs            # as a user who cannot open /dev/fuse
 *   orchfs: cannot open /dev/fuse read-write: Permission denied (mode 0600, root:root)
 *     fix: as root, chmod 0666 /dev/fuse (the mode the fuse3 package gives it) */
#ifndef ORCHFS_ACCESS_H
#define ORCHFS_ACCESS_H

#include <stdio.h>

/* As root: 0 at once. Otherwise 0 when a mount can be made, else -1 after
 * writing each missing thing and its fix to out. Creates nothing. */
int fs_access_check(FILE *out);

#endif
