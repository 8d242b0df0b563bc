/* runner: posix_spawn of workers in their own process group, with pidfds. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int runner_start(const char *command, const char *cwd, char *const envp[], int logfd,
		 struct runner_proc *out, struct orch_err *err)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		close(logfd);
		return err_set(err, EIO, "pipe: %s", strerror(errno));
	}

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* dup2 clears O_CLOEXEC on the copies, so only 0, 1 and 2 survive exec. */
	posix_spawn_file_actions_adddup2(&fa, pipefd[0], 0);
	posix_spawn_file_actions_adddup2(&fa, logfd, 1);
	posix_spawn_file_actions_adddup2(&fa, logfd, 2);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	sigset_t none, all;
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);

	char *const argv[] = {(char *)"sh", (char *)"-c", (char *)command, NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(logfd);
	close(pipefd[0]);
	if (rc != 0) {
		close(pipefd[1]);
		return err_set(err, rc == ENOENT && cwd ? ENOENT : EIO, "cannot start worker%s%s: %s",
			       cwd ? " in " : "", cwd ? cwd : "", strerror(rc));
	}
	int pidfd = pidfd_open_(pid);
	if (pidfd < 0) {
		/* Cannot wait on it without a pidfd: do not leave it running unwatched. */
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(pipefd[1]);
		return err_set(err, EIO, "pidfd_open: %s", strerror(errno));
	}
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	out->pid = pid;
	out->pidfd = pidfd;
	out->stdin_fd = pipefd[1];
	return 0;
}

int runner_signal(pid_t pgid, int sig)
{
	return kill(-pgid, sig) < 0 ? -errno : 0;
}

int runner_reap(pid_t pid, int *wstatus)
{
	pid_t r = waitpid(pid, wstatus, WNOHANG);
	return r == pid ? 1 : 0;
}
