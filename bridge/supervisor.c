/* supervisor: the workers' parent, outliving the daemon (see supervisor.h). */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "runner.h"

/* The child runs on a stack of its own until it execs: a few system calls. */
#define SPAWN_STACK (64 * 1024)
/* A supervisor started for a daemon that never connects gives up. */
#define SUPERVISOR_FIRST_MS 10000

/* --- messages --- */

int sv_send(int sock, uint32_t type, int32_t id, int32_t a, const void *payload, size_t len,
	    const int *fds, int nfds)
{
	struct sv_msg m = {.type = type, .id = id, .a = a, .len = (uint32_t)len};
	struct iovec iov[2] = {{&m, sizeof m}, {(void *)payload, len}};
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr h = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	if (nfds > 0) {
		h.msg_control = control.buf;
		h.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&h);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
	}
	size_t left = sizeof m + len;
	while (left) {
		ssize_t n = sendmsg(sock, &h, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		left -= (size_t)n;
		/* the descriptors went with the first bytes */
		h.msg_control = NULL;
		h.msg_controllen = 0;
		while (n > 0 && h.msg_iovlen) {
			size_t take = (size_t)n < h.msg_iov->iov_len ? (size_t)n : h.msg_iov->iov_len;
			h.msg_iov->iov_base = (char *)h.msg_iov->iov_base + take;
			h.msg_iov->iov_len -= take;
			n -= (ssize_t)take;
			if (!h.msg_iov->iov_len) {
				h.msg_iov++;
				h.msg_iovlen--;
			}
		}
	}
	return 0;
}

static int read_full(int sock, void *to, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(sock, (char *)to + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

int sv_recv(int sock, struct sv_msg *m, char **payload, int fds[2])
{
	fds[0] = fds[1] = -1;
	*payload = NULL;
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = {m, sizeof *m};
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			   .msg_controllen = sizeof control.buf};
	ssize_t n;
	do
		n = recvmsg(sock, &h, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n < 0 ? -errno : -ECONNRESET;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			int got[2];
			memcpy(got, CMSG_DATA(c), (nfds > 2 ? 2 : nfds) * sizeof(int));
			for (size_t i = 0; i < nfds && i < 2; i++)
				fds[i] = got[i];
		}
	int rc = (size_t)n < sizeof *m ? read_full(sock, (char *)m + n, sizeof *m - (size_t)n) : 0;
	if (!rc && (h.msg_flags & MSG_CTRUNC || m->len > SV_MSG_MAX))
		rc = -EPROTO;
	if (!rc && m->len) {
		*payload = xmalloc((size_t)m->len + 1);
		rc = read_full(sock, *payload, m->len);
		(*payload)[m->len] = '\0';
	}
	if (rc) {
		free(*payload);
		*payload = NULL;
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		fds[0] = fds[1] = -1;
	}
	return rc;
}

/* --- starting a worker --- */

/* A signal's disposition through the system call: glibc's sigaction()
 * refuses its own two (32 and 33), which may come ignored from whoever
 * started orchfs (a posix_spawn parent leaves them so), and a worker must
 * not inherit that. */
struct kernel_sigaction {
	void (*handler)(int);
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

static int disposition(int sig, const struct kernel_sigaction *set, struct kernel_sigaction *old)
{
	return (int)syscall(SYS_rt_sigaction, sig, set, old, sizeof(uint64_t));
}

struct spawn_args {
	const char *command, *cwd;
	char *const *envp;
	int stdin_fd, logfd, procs_fd;
	uint64_t ignored;          /* what the supervisor ignores: bit sig - 1 */
	int error;                 /* set by the child when it fails before exec */
	const char *failed;        /* what failed */
};

/* The child: it shares the supervisor's memory until it execs (CLONE_VM),
 * so only system calls here, nothing that takes a lock or allocates. */
static int spawn_child(void *arg)
{
	struct spawn_args *a = arg;
	/* What the supervisor ignores or blocks, the worker must not. It has no
	 * handlers (exec would reset them, and none can run in the meantime),
	 * so only the few ignored signals are reset, instead of a sigaction
	 * per signal (64 system calls a start). */
	const struct kernel_sigaction dfl = {.handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++)
		if (a->ignored >> (sig - 1) & 1)
			disposition(sig, &dfl, NULL);
	if (a->procs_fd >= 0 && write(a->procs_fd, "0", 1) != 1) {
		a->failed = "joining its cgroup";
		goto fail;
	}
	if (setpgid(0, 0) < 0) {
		a->failed = "setpgid";
		goto fail;
	}
	/* dup2 clears close-on-exec on the copies: only 0, 1 and 2 stay */
	if (dup2(a->stdin_fd, 0) < 0 || dup2(a->logfd, 1) < 0 || dup2(a->logfd, 2) < 0) {
		a->failed = "dup2";
		goto fail;
	}
	if (a->cwd[0] && chdir(a->cwd) < 0) {
		a->failed = "chdir";
		goto fail;
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	char *const argv[] = {(char *)"sh", (char *)"-c", (char *)a->command, NULL};
	execve("/bin/sh", argv, a->envp);
	a->failed = "exec /bin/sh";
fail:
	a->error = errno ? errno : EIO;
	_exit(127);
}

/* The worker's process, as clone(CLONE_VM | CLONE_VFORK) makes it (what
 * posix_spawn does), on stack (SPAWN_STACK bytes, reused: the supervisor
 * waits for each child to exec): pid, or -errno with what failed in *failed. */
static pid_t spawn(const struct spawn_args *in, char *stack, const char **failed)
{
	struct spawn_args a = *in;
	pid_t pid = clone(spawn_child, stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
	if (pid < 0) {
		*failed = "clone";
		return -errno;
	}
	if (a.error) {
		/* it failed before exec and has exited: reaped here */
		waitpid(pid, NULL, 0);
		*failed = a.failed;
		return -a.error;
	}
	return pid;
}

/* --- the supervisor --- */

struct sv_worker {
	int id;
	pid_t pid;
	int stdin_fd;   /* write end, held so that the worker's stdin outlives a daemon */
};

struct sv {
	int listen_fd, daemon, exits, sigfd;
	struct sv_worker *workers;
	size_t nworkers, cap;
	int last_id;    /* the highest id started */
	uint64_t ignored;   /* signals set to SIG_IGN, inherited or ours: bit sig - 1 */
	char *stack;        /* the children's until they exec */
};

static struct sv_worker *worker_by(struct sv *s, int id, pid_t pid)
{
	for (size_t i = 0; i < s->nworkers; i++)
		if (id ? s->workers[i].id == id : s->workers[i].pid == pid)
			return &s->workers[i];
	return NULL;
}

static void daemon_gone(struct sv *s)
{
	if (s->daemon >= 0)
		close(s->daemon);
	s->daemon = -1;
}

static void say(struct sv *s, uint32_t type, int32_t id, int32_t a, const char *text, int fd)
{
	if (s->daemon >= 0 && sv_send(s->daemon, type, id, a, text, text ? strlen(text) : 0,
				      &fd, fd >= 0 ? 1 : 0))
		daemon_gone(s);
}

static void on_spawn(struct sv *s, const struct sv_msg *m, char *payload, const int fds[2])
{
	/* command \0 cwd \0 then the environment, each \0-ended */
	size_t len = m->len, n = 0;
	char **envp = NULL;
	const char *command = payload, *cwd = NULL;
	int stdin_pipe[2] = {-1, -1};
	const char *failed = "a message that is not a spawn";
	pid_t pid = -EPROTO;
	if (payload && fds[0] >= 0) {
		size_t at = strnlen(payload, len) + 1;
		cwd = at < len ? payload + at : NULL;
		at += cwd ? strnlen(cwd, len - at) + 1 : 0;
		envp = xcalloc(len / 2 + 2, sizeof *envp);
		while (at < len) {
			envp[n++] = payload + at;
			at += strnlen(payload + at, len - at) + 1;
		}
	}
	if (cwd && worker_by(s, m->id, 0)) {
		pid = -EEXIST;
		failed = "a worker with its id";
	} else if (cwd && pipe2(stdin_pipe, O_CLOEXEC) < 0) {
		pid = -errno;
		failed = "pipe";
	} else if (cwd) {
		struct spawn_args a = {.command = command, .cwd = cwd, .envp = envp,
				       .stdin_fd = stdin_pipe[0], .logfd = fds[0],
				       .procs_fd = fds[1], .ignored = s->ignored};
		pid = spawn(&a, s->stack, &failed);
		close(stdin_pipe[0]);
	}
	free(envp);
	if (pid < 0) {
		if (stdin_pipe[1] >= 0)
			close(stdin_pipe[1]);
		say(s, SV_FAILED, m->id, -pid, failed, -1);
		return;
	}
	/* the daemon writes without waiting for the worker to read */
	fcntl(stdin_pipe[1], F_SETFL, O_NONBLOCK);
	ARRAY_GROW(s->workers, s->cap, s->nworkers + 1);
	s->workers[s->nworkers++] = (struct sv_worker){m->id, pid, stdin_pipe[1]};
	if (m->id > s->last_id)
		s->last_id = m->id;
	say(s, SV_STARTED, m->id, pid, NULL, stdin_pipe[1]);
}

static void on_message(struct sv *s)
{
	struct sv_msg m;
	char *payload;
	int fds[2];
	if (sv_recv(s->daemon, &m, &payload, fds)) {
		daemon_gone(s);
		return;
	}
	switch (m.type) {
	case SV_HELLO:
		for (size_t i = 0; i < s->nworkers; i++)
			say(s, SV_ADOPT, s->workers[i].id, s->workers[i].pid, NULL,
			    s->workers[i].stdin_fd);
		say(s, SV_READY, 0, s->last_id, NULL, -1);
		break;
	case SV_SPAWN:
		on_spawn(s, &m, payload, fds);
		break;
	case SV_SIGNAL: {
		/* only while it is ours and not reaped: its pid is not anyone else's */
		struct sv_worker *w = worker_by(s, m.id, 0);
		if (w)
			kill(-w->pid, m.a);
		break;
	}
	default:
		break;
	}
	free(payload);
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void reap(struct sv *s)
{
	struct signalfd_siginfo si;
	while (read(s->sigfd, &si, sizeof si) == sizeof si)
		;
	int wstatus;
	for (pid_t pid; (pid = waitpid(-1, &wstatus, WNOHANG)) > 0;) {
		struct sv_worker *w = worker_by(s, 0, pid);
		if (!w)
			continue;
		/* first on the disk (the page cache: a daemon's crash, not the
		 * machine's), so that a daemon that misses the message learns it */
		struct sv_exit rec = {w->id, wstatus};
		(void)!pwrite(s->exits, &rec, sizeof rec,
			      (off_t)(w->id % SUPERVISOR_EXIT_SLOTS) * (off_t)sizeof rec);
		close(w->stdin_fd);
		int id = w->id;
		*w = s->workers[--s->nworkers];
		say(s, SV_EXITED, id, wstatus, NULL, -1);
	}
}

static void on_connect(struct sv *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct ucred who;
	socklen_t len = sizeof who;
	/* one daemon at a time, of our own user */
	if (s->daemon >= 0 || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &who, &len) < 0 ||
	    (who.uid != getuid() && who.uid != 0)) {
		close(fd);
		return;
	}
	s->daemon = fd;
}

int supervisor_main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	/* nothing of the daemon's but the socket (3): its mount, store and
	 * listeners are not the supervisor's to hold open */
	close_range(4, ~0u, 0);
	/* a session of its own (the daemon's terminal's ^C is not for it), and
	 * not the daemon's child: reparented, it outlives it */
	setsid();
	pid_t child = fork();
	if (child != 0)
		_exit(child < 0 ? 1 : 0);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close(null);
	}
	if (chdir("/") < 0)
		_exit(1);
	prctl(PR_SET_NAME, "orchfs-sv");   /* not "exe", as /proc/self/exe would have it */
	/* 64 workers busy on 2 CPUs must not keep it from starting and
	 * reaping them: it is the scheduler's hands */
	runner_raise_priority();
	signal(SIGPIPE, SIG_IGN);
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	char exits_path[4096];
	snprintf(exits_path, sizeof exits_path, "%s/exits", argv[2]);
	struct sv s = {.listen_fd = 3, .daemon = -1};
	/* (a bit mask, not a sigset_t: glibc's sigaddset refuses 32 and 33 too) */
	for (int sig = 1; sig < NSIG; sig++) {
		struct kernel_sigaction old;
		if (disposition(sig, NULL, &old) == 0 && old.handler == SIG_IGN)
			s.ignored |= UINT64_C(1) << (sig - 1);
	}
	fcntl(s.listen_fd, F_SETFD, FD_CLOEXEC);
	s.exits = open(exits_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	s.sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	s.stack = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (s.exits < 0 || s.sigfd < 0 || s.stack == MAP_FAILED)
		_exit(1);
	bool served = false;
	while (s.daemon >= 0 || s.nworkers || !served) {
		struct pollfd p[3] = {{.fd = s.listen_fd, .events = POLLIN},
				      {.fd = s.sigfd, .events = POLLIN},
				      {.fd = s.daemon, .events = POLLIN}};
		int n = poll(p, 3, served ? -1 : SUPERVISOR_FIRST_MS);
		if (n == 0)
			break;   /* started, and no daemon came */
		if (p[1].revents)
			reap(&s);
		if (s.daemon >= 0 && p[2].revents)
			on_message(&s);
		if (p[0].revents) {
			on_connect(&s);
			served = served || s.daemon >= 0;
		}
	}
	/* nothing left: the next daemon starts another */
	free(s.workers);
	munmap(s.stack, SPAWN_STACK);
	return 0;
}
