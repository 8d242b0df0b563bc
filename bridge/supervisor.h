/* supervisor: the parent of a daemon's local workers, a process of its own
 * that outlives the daemon, as containerd outlives dockerd. It starts each
 * worker, holds its stdin open, reaps it and records its exit status (in
 * STATE_DIR/run/exits, and to the daemon connected); a daemon that crashed or
 * was stopped with --live-restore is replaced by the next one on the same
 * state directory, which connects to STATE_DIR/run/supervisor.sock and
 * re-adopts the workers still running and the exits it missed. With no
 * worker and no daemon left it exits.
 *   ps -o pid,args -C orchfs-sv     # "orchfs --supervise STATE_DIR/run" */
#ifndef ORCHFS_SUPERVISOR_H
#define ORCHFS_SUPERVISOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* argv[1] of the supervisor's process: the daemon's binary, executed again */
#define SUPERVISOR_ARG "--supervise"
/* exits are recorded at (id % SUPERVISOR_EXIT_SLOTS) in run/exits: a record
 * is overwritten only by one 65,536 workers later */
#define SUPERVISOR_EXIT_SLOTS 65536

/* Messages on a stream socket: this header, then the payload its type says;
 * descriptors ride with the header's bytes. */
enum sv_type {
	SV_HELLO = 1,  /* daemon: I am the daemon now. Reply: SV_ADOPT each, then SV_READY */
	SV_SPAWN,      /* daemon: start id; payload command\0cwd\0env...\0; fds log [, cgroup.procs] */
	SV_SIGNAL,     /* daemon: signal a to id's process group (none once reaped) */
	SV_STARTED,    /* supervisor: id runs as pid a; fd: the write end of its stdin */
	SV_FAILED,     /* supervisor: id did not start, errno a; payload: what failed */
	SV_EXITED,     /* supervisor: id ended, wait status a */
	SV_ADOPT,      /* supervisor: id runs as pid a; fd: its stdin's write end */
	SV_READY,      /* supervisor: that was all; a: the highest id it ever started */
};

struct sv_msg {
	uint32_t type;
	int32_t id;
	int32_t a;
	uint32_t len;   /* of the payload that follows */
};

/* One slot of run/exits (8 bytes; id 0: empty). */
struct sv_exit {
	int32_t id;
	int32_t wstatus;
};

/* The largest payload: a spawn's command, cwd and environment. */
#define SV_MSG_MAX (16 * 1024 * 1024)

/* The supervisor's process: `orchfs --supervise RUN_DIR`, with the listening
 * socket as fd 3. Detaches (a session of its own, not the daemon's child)
 * and serves until no worker and no daemon is left. */
int supervisor_main(int argc, char **argv);

/* Sends a whole message with up to 2 descriptors (blocking; one sender at a
 * time per socket); 0 or -errno. */
int sv_send(int sock, uint32_t type, int32_t id, int32_t a, const void *payload, size_t len,
	    const int *fds, int nfds);
/* Receives one whole message (blocking): its header into *m, its payload
 * into *payload (malloc'd, NUL-terminated; NULL when empty), the descriptors
 * that came into fds[2] (-1 for none). 0, or -errno: -ECONNRESET at the
 * end, -EPROTO for what is not a message. */
int sv_recv(int sock, struct sv_msg *m, char **payload, int fds[2]);

#endif
