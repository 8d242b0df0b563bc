/* daemon_info: how a running daemon is found from its state directory
 * (README, "The daemon"; `orchfs status` reads the same file):
 *   STATE_DIR/orchfs.pid    "PID\n", once it holds the directory (after orch_init)
 *   STATE_DIR/daemon.json   {"pid":N,"mount":...,"http":...}, once it serves
 * and how a second daemon says who holds what it wanted. */
#ifndef ORCHFS_DAEMON_INFO_H
#define ORCHFS_DAEMON_INFO_H

#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"

struct daemon_info {
	pid_t pid;
	const char *mount, *state_dir;   /* absolute */
	const char *http, *ws;           /* URLs; NULL: off */
	const char *token_file;          /* NULL: no token */
	const char *log;                 /* NULL: stderr (-f) */
	int64_t started_ms;
};

/* $XDG_STATE_HOME/orchfs, else ~/.local/state/orchfs (malloc'd). */
char *daemon_default_state_dir(void);

/* Each written whole, by rename, mode 0600; -errno and err. */
int daemon_pid_write(const char *state_dir, pid_t pid, struct orch_err *err);
int daemon_info_write(const struct daemon_info *d, struct orch_err *err);
/* The file's text for d (one line of JSON). */
void daemon_info_render(const struct daemon_info *d, struct buf *out);
void daemon_info_remove(const char *state_dir);   /* daemon.json */
void daemon_pid_remove(const char *state_dir);    /* orchfs.pid */

/* Whether pid is a running orchfs daemon (not its supervisor, orchfs-sv). */
int daemon_pid_alive(pid_t pid);
/* The message for a state directory whose lock is held: who holds it and
 * how to stop it, as far as its files (and /proc) tell. */
void daemon_describe_holder(const char *state_dir, struct buf *out);
/* The running orchfs that serves mount (an orchfs mount, found in
 * /proc/self/mountinfo): 1 and its pid (0: not found) and state directory
 * (empty: not found) when mount is one, else 0. */
int daemon_serving(const char *mount, pid_t *pid, char *state_dir, size_t size);

#endif
