/* sdnotify: systemd's readiness protocol without libsystemd (README, "The
 * daemon"; contrib/orchfs@.service, Type=notify).
 *   NOTIFY_SOCKET=/run/user/1000/systemd/notify orchfs -f ~/orchfs
 *   -> the datagram "READY=1\nMAINPID=<pid>" once the mount and the API are up */
#ifndef ORCHFS_SDNOTIFY_H
#define ORCHFS_SDNOTIFY_H

/* Sends state (e.g. "READY=1") with MAINPID=getpid() to $NOTIFY_SOCKET (a
 * path, or an abstract name when it starts with '@'). 0 when sent or when
 * NOTIFY_SOCKET is unset (not run by systemd), else -errno. */
int sd_notify_state(const char *state);

#endif
