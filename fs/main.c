/* main: the orchfs daemon's command line, mount and life cycle (SPEC section 7).
 *   orchfs --pricing contrib/pricing.json ~/orchfs
 *   cat contrib/demo-plan.json > ~/orchfs/mma/tracks/create
 *   fusermount3 -u ~/orchfs      # workers get TERM, then KILL; exit 0 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs.h"
#include "nodes.h"

extern char **environ;

static void usage(FILE *out)
{
	fputs("usage: orchfs [OPTIONS] MOUNTPOINT\n"
	      "  -f, --foreground        stay in the foreground (default: daemonize)\n"
	      "  --state-dir DIR         default $XDG_STATE_HOME/orchfs, else ~/.local/state/orchfs\n"
	      "  --max-workers N         default: the number of CPUs\n"
	      "  --pricing FILE          model prices, JSON {\"MODEL\":{\"input_per_mtok\",\"output_per_mtok\",...}}\n"
	      "  --kill-grace SECONDS    SIGTERM, then SIGKILL after this; default 5\n"
	      "  --telemetry-hz N        default 10\n"
	      "  -h, --help   -V, --version\n",
	      out);
}

static long parse_num(const char *opt, const char *s, long min, long max)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "orchfs: %s wants a whole number from %ld to %ld, not \"%s\"\n", opt,
			min, max, s);
		exit(2);
	}
	return v;
}

static char *default_state_dir(void)
{
	const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
	char path[PATH_MAX];
	if (xdg && *xdg)
		snprintf(path, sizeof path, "%s/orchfs", xdg);
	else
		snprintf(path, sizeof path, "%s/.local/state/orchfs", home && *home ? home : "/tmp");
	return xstrdup(path);
}

/* A daemon that died leaves "Transport endpoint is not connected" behind. */
static void clean_stale_mount(const char *mountpoint)
{
	struct stat st;
	if (stat(mountpoint, &st) == 0 || errno != ENOTCONN)
		return;
	fprintf(stderr, "orchfs: %s is a stale mount; unmounting it\n", mountpoint);
	char *const argv[] = {(char *)"fusermount3", (char *)"-u", (char *)"-z", (char *)mountpoint, NULL};
	pid_t pid;
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0)
		waitpid(pid, NULL, 0);
}

static char *absolute(const char *path)
{
	if (path[0] == '/')
		return xstrdup(path);
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return xstrdup(path);
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s/%s", cwd, path);
	return buf_steal(&b);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"state-dir", required_argument, NULL, 's'},
		{"max-workers", required_argument, NULL, 'm'},
		{"pricing", required_argument, NULL, 'p'},
		{"kill-grace", required_argument, NULL, 'g'},
		{"telemetry-hz", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	struct orch_config cfg = {
		.max_workers = (int)sysconf(_SC_NPROCESSORS_ONLN),
		.kill_grace_s = 5,
		.telemetry_hz = 10,
		.max_write = 1u << 20,
	};
	bool foreground = false;
	int c;
	while ((c = getopt_long(argc, argv, "fhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': foreground = true; break;
		case 's': cfg.state_dir = absolute(optarg); break;
		case 'm': cfg.max_workers = (int)parse_num("--max-workers", optarg, 1, 4096); break;
		case 'p': cfg.pricing_file = absolute(optarg); break;
		case 'g': cfg.kill_grace_s = (int)parse_num("--kill-grace", optarg, 0, 3600); break;
		case 't': cfg.telemetry_hz = (int)parse_num("--telemetry-hz", optarg, 1, 1000); break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("orchfs %s\n", ORCHFS_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	if (cfg.max_workers < 1)
		cfg.max_workers = 1;
	if (!cfg.state_dir)
		cfg.state_dir = default_state_dir();
	char cwd[PATH_MAX];
	cfg.workdir = xstrdup(getcwd(cwd, sizeof cwd) ? cwd : "/");

	const char *mnt_arg = argv[optind];
	clean_stale_mount(mnt_arg);
	char real[PATH_MAX];
	if (!realpath(mnt_arg, real)) {
		fprintf(stderr, "orchfs: mountpoint %s: %s\n", mnt_arg, strerror(errno));
		return 1;
	}
	cfg.mount = xstrdup(real);

	struct orch o;
	struct orch_err err = {0};
	if (orch_init(&o, &cfg, &err)) {
		fprintf(stderr, "orchfs: %s\n", err.message);
		return 1;
	}
	struct fs *fs = fs_create(&o);
	char *fuse_argv[] = {argv[0], (char *)"-o",
			     (char *)"fsname=orchfs,subtype=orchfs,default_permissions", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
	struct fuse_session *se = fuse_session_new(&args, fs_ops(), sizeof *fs_ops(), fs);
	int status = 1;
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cfg.mount) != 0)
		goto out_signals;
	signal(SIGPIPE, SIG_IGN);
	/* Threads are started after the fork of daemonizing, or they would be lost. */
	fuse_daemonize(foreground);
	if (orch_start(&o) != 0) {
		fprintf(stderr, "orchfs: cannot start the scheduler\n");
		goto out_unmount;
	}
	struct fuse_loop_config *loop = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(loop, 64);
	status = fuse_session_loop_mt(se, loop) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(loop);
out_unmount:
	/* Unmount first: a worker that touches the mount while we stop it gets
	 * ENOENT instead of hanging on a daemon that no longer answers. */
	fuse_session_unmount(se);
	orch_shutdown(&o);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	fs_destroy(fs);
	orch_destroy(&o);
	free(cfg.state_dir);
	free(cfg.pricing_file);
	free(cfg.workdir);
	free(cfg.mount);
	return status;
}
