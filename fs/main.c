/* main: the orchfs daemon's command line, mount and life cycle (README, "The daemon"; orchfs(1)).
 *   orchfs --pricing contrib/pricing.json ~/orchfs
 *   cat contrib/demo-plan.json > ~/orchfs/mma/tracks/create
 *   fusermount3 -u ~/orchfs      # workers get TERM, then KILL; exit 0 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "access.h"
#include "api.h"
#include "auth.h"
#include "cli.h"
#include "daemon_info.h"
#include "fs.h"
#include "nodes.h"
#include "notify.h"
#include "sdnotify.h"
#include "store.h"
#include "stream.h"
#include "supervisor.h"

#define FS_MAX_THREADS 10
#define FS_IDLE_THREADS 8

extern char **environ;

static void usage(FILE *out)
{
	fputs("usage: orchfs [OPTIONS] MOUNTPOINT\n"
	      "  -f, --foreground        stay in the foreground (default: daemonize)\n"
	      "  --state-dir DIR         default $XDG_STATE_HOME/orchfs, else ~/.local/state/orchfs\n"
	      "  --http ADDR:PORT|off    default 127.0.0.1:8999\n"
	      "  --ws ADDR:PORT|off      default 127.0.0.1:9000\n"
	      "  --token-file FILE       default STATE_DIR/token, made at first start\n"
	      "  --no-auth               no token (refused on a non-loopback address)\n"
	      "  --allow-origin ORIGIN   a web page of yours (http://localhost:3000) may call\n"
	      "                          the API (CORS, WebSocket); repeatable\n"
	      "  --tls-cert FILE --tls-key FILE   serve HTTPS and WSS\n"
	      "  --web-root DIR|off      the dashboard's files, served at / of --http; default\n"
	      "                          " ORCHFS_WEB_ROOT "\n"
	      "  --max-body BYTES        largest request body; default 1048576\n"
	      "  --ws-queue-max BYTES    a WebSocket client lagging more is closed; default 4194304\n"
	      "  --ws-queue-soft BYTES   ... or lagging more for --ws-queue-window; default 1048576\n"
	      "  --ws-queue-window SECONDS   default 10\n"
	      "  --max-workers N         default: the number of CPUs\n"
	      "  --durable               sync the journal before a change is acknowledged (a\n"
	      "                          write through the mount: at close): survive power\n"
	      "                          loss, not only kill -9\n"
	      "  --pricing FILE          model prices, JSON {\"MODEL\":{\"input_per_mtok\",\"output_per_mtok\",...}}\n"
	      "  --kill-grace SECONDS    SIGTERM, then SIGKILL after this; default 5\n"
	      "  --isolation auto|cgroup|process-group   a cgroup per worker where one can\n"
	      "                          be made (auto, the default), or process groups\n"
	      "  --live-restore          a clean stop leaves workers running, for the next\n"
	      "                          daemon on the state directory (a crash always does)\n"
	      "  --runner local|slurm    where tasks without a \"runner\" go; default local\n"
	      "  --slurm-poll-ms N       how often Slurm's jobs are looked at; default 1000\n"
	      "  --slurm-log-dir DIR     Slurm workers' logs, on a directory the nodes share;\n"
	      "                          default STATE_DIR/logs\n"
	      "  --telemetry-hz N        default 10\n"
	      "  --log-level LEVEL       error, warn, info (default) or debug; the log is\n"
	      "                          STATE_DIR/orchfs.log, or stderr with -f\n"
	      "  -h, --help   -V, --version\n"
	      "The command for people: orchfs ps|tracks|tasks|logs|events|top|run|... (orchfs help).\n"
	      "See orchfs(1).\n",
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

/* A daemon that died leaves "Transport endpoint is not connected" behind. */
static void clean_stale_mount(const char *mountpoint)
{
	/* statfs always reaches the daemon; stat may be answered from the
	 * kernel's attribute cache long after the daemon died. */
	struct statfs sfs;
	if (statfs(mountpoint, &sfs) == 0 || errno != ENOTCONN)
		return;
	fprintf(stderr, "orchfs: %s is a stale mount; unmounting it\n", mountpoint);
	char *const argv[] = {(char *)"fusermount3", (char *)"-u", (char *)"-z", (char *)mountpoint, NULL};
	pid_t pid;
	if (posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ) == 0)
		waitpid(pid, NULL, 0);
}

/* SCHEME://ADDR:PORT of a listener, an IPv6 address in brackets. */
static char *listen_url(const char *scheme, const struct api_listen *l)
{
	struct buf u = BUF_INIT;
	bool v6 = strchr(l->addr, ':') != NULL;
	buf_printf(&u, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", l->addr, v6 ? "]" : "", l->port);
	return buf_steal(&u);
}

/* The dashboard's address with the token in its fragment (a browser never
 * sends a fragment), for the person who started orchfs: on stderr only when
 * that is a terminal, before the daemon detaches; never when stderr is a
 * file or a pipe (orchfs.log, a journal, a redirected -f), where the token
 * must not be (README, "Security"). */
static void dashboard_tell(const struct api_config *api, const char *http_url, const char *token)
{
	if (!http_url || !api->web_root || !isatty(STDERR_FILENO))
		return;
	if (api->no_auth)
		fprintf(stderr, "orchfs: dashboard: %s/\n", http_url);
	else if (token)
		fprintf(stderr, "orchfs: dashboard: %s/#token=%s\n", http_url, token);
}

/* Opens the store once to report a locked, corrupt or unwritable state
 * directory while the user can still see the message. A directory open to
 * others is told on stderr here only when the log is a file: with -f the
 * log is stderr, and orch_init logs it there already. */
static int state_dir_check(const char *dir, bool log_is_stderr, struct orch_err *err)
{
	int rc = orch_mkdir_p(dir);
	if (rc)
		return err_set(err, -rc, "cannot create the state directory %s: %s", dir, strerror(-rc));
	if (!log_is_stderr) {
		struct buf warning = BUF_INIT;
		store_check_mode(dir, &warning);
		if (warning.len)
			fprintf(stderr, "orchfs: warning: %s\n", warning.data);
		buf_free(&warning);
	}
	struct store *s;
	if (store_open(dir, false, &s, err)) {
		if (err->errnum == EBUSY) {
			/* who holds it, and how to stop it */
			struct buf why = BUF_INIT;
			daemon_describe_holder(dir, &why);
			err_set(err, EBUSY, "%s", why.data);
			buf_free(&why);
		}
		return -err->errnum;
	}
	store_close(s);
	return 0;
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

/* What main allocated for the options, on every way out. */
static void options_free(struct orch_config *cfg, struct api_config *api)
{
	free(cfg->state_dir);
	free(cfg->token_file);
	free(cfg->api_url);
	free(cfg->api_token);
	free((char *)api->tls_cert);
	free((char *)api->tls_key);
	free(cfg->pricing_file);
	free(cfg->slurm_log_dir);
	free(cfg->workdir);
	free(cfg->mount);
	free(api->allow_origins);
	free((char *)api->web_root);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"foreground", no_argument, NULL, 'f'},
		{"state-dir", required_argument, NULL, 's'},
		{"max-workers", required_argument, NULL, 'm'},
		{"durable", no_argument, NULL, 'd'},
		{"http", required_argument, NULL, 'H'},
		{"ws", required_argument, NULL, 'W'},
		{"token-file", required_argument, NULL, 'T'},
		{"no-auth", no_argument, NULL, 'N'},
		{"allow-origin", required_argument, NULL, 'O'},
		{"tls-cert", required_argument, NULL, 'C'},
		{"tls-key", required_argument, NULL, 'K'},
		{"web-root", required_argument, NULL, 'r'},
		{"max-body", required_argument, NULL, 'B'},
		{"ws-queue-max", required_argument, NULL, 'Q'},
		{"ws-queue-soft", required_argument, NULL, 'S'},
		{"ws-queue-window", required_argument, NULL, 'w'},
		{"pricing", required_argument, NULL, 'p'},
		{"kill-grace", required_argument, NULL, 'g'},
		{"isolation", required_argument, NULL, 'I'},
		{"live-restore", no_argument, NULL, 'L'},
		{"runner", required_argument, NULL, 'R'},
		{"slurm-poll-ms", required_argument, NULL, 'P'},
		{"slurm-log-dir", required_argument, NULL, 'D'},
		{"telemetry-hz", required_argument, NULL, 't'},
		{"log-level", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	/* the notifier's helper process (fs/notify.c), not a user command */
	if (argc == 3 && strcmp(argv[1], "--notify-hand") == 0)
		return notifier_hand_main(argv[2]);
	/* the workers' supervisor (bridge/supervisor.c), not a user command either */
	if (argc == 3 && strcmp(argv[1], SUPERVISOR_ARG) == 0)
		return supervisor_main(argc, argv);
	/* `orchfs ps`, `orchfs run plan.json`: the command for people (bridge/cli.c) */
	if (cli_wanted(argc, argv))
		return cli_main(argc, argv);
	struct orch_config cfg = {
		.max_workers = (int)sysconf(_SC_NPROCESSORS_ONLN),
		.kill_grace_s = 5,
		.telemetry_hz = 10,
		.max_write = 1u << 20,
		.log = {.level = ORCH_LOG_INFO, .fd = STDERR_FILENO},
	};
	struct api_config api = {.telemetry_hz = 10};
	struct orch_err err = {0};
	if (api_parse_listen("127.0.0.1:8999", &api.http, &err) ||
	    api_parse_listen("127.0.0.1:9000", &api.ws, &err))
		return 1;
	bool foreground = false;
	/* the installed dashboard; a --web-root given must be there */
	const char *web_dir = ORCHFS_WEB_ROOT;
	bool web_given = false;
	int c;
	while ((c = getopt_long(argc, argv, "fhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': foreground = true; break;
		case 's':   /* the last wins (the systemd unit's default, then ORCHFS_ARGS) */
			free(cfg.state_dir);
			cfg.state_dir = absolute(optarg);
			break;
		case 'm':
			cfg.max_workers = (int)parse_num("--max-workers", optarg, 1, 4096);
			cfg.max_workers_given = true;
			break;
		case 'd': cfg.durable = true; break;
		case 'H':
		case 'W':
			if (api_parse_listen(optarg, c == 'H' ? &api.http : &api.ws, &err)) {
				fprintf(stderr, "orchfs: --%s %s\n", c == 'H' ? "http" : "ws", err.message);
				options_free(&cfg, &api);
				return 2;
			}
			break;
		case 'T': cfg.token_file = absolute(optarg); break;
		case 'N': api.no_auth = true; break;
		case 'O': {
			char why[200];
			if (!auth_origin_valid(optarg, why, sizeof why)) {
				fprintf(stderr, "orchfs: --allow-origin %s\n", why);
				options_free(&cfg, &api);
				return 2;
			}
			api.allow_origins = xrealloc(api.allow_origins,
						     (api.n_allow_origins + 1) * sizeof *api.allow_origins);
			api.allow_origins[api.n_allow_origins++] = optarg;
			break;
		}
		case 'C': api.tls_cert = absolute(optarg); break;
		case 'K': api.tls_key = absolute(optarg); break;
		case 'r':
			web_dir = strcmp(optarg, "off") == 0 ? NULL : optarg;
			web_given = web_dir != NULL;
			break;
		case 'B': api.max_body = (size_t)parse_num("--max-body", optarg, 1, 1L << 30); break;
		case 'Q': api.ws_queue_max = (size_t)parse_num("--ws-queue-max", optarg, 1024, 1L << 32); break;
		case 'S': api.ws_queue_soft = (size_t)parse_num("--ws-queue-soft", optarg, 1024, 1L << 32); break;
		case 'w': api.ws_queue_window_s = (int)parse_num("--ws-queue-window", optarg, 1, 3600); break;
		case 'p':   /* the last wins, as --state-dir */
			free(cfg.pricing_file);
			cfg.pricing_file = absolute(optarg);
			break;
		case 'g': cfg.kill_grace_s = (int)parse_num("--kill-grace", optarg, 0, 3600); break;
		case 'I':
			if (!strcmp(optarg, "auto") || !strcmp(optarg, "cgroup") ||
			    !strcmp(optarg, "process-group")) {
				cfg.isolation = optarg[0] == 'a' ? ISOLATION_AUTO
					      : optarg[0] == 'c' ? ISOLATION_CGROUP : ISOLATION_PGROUP;
				break;
			}
			fprintf(stderr, "orchfs: --isolation %s: auto, cgroup or process-group\n", optarg);
			options_free(&cfg, &api);
			return 2;
		case 'L': cfg.live_restore = true; break;
		case 'R':
			if (strcmp(optarg, "local") && strcmp(optarg, "slurm")) {
				fprintf(stderr, "orchfs: --runner %s: local or slurm\n", optarg);
				options_free(&cfg, &api);
				return 2;
			}
			cfg.runner = optarg[0] == 's' ? RUNNER_SLURM : RUNNER_LOCAL;
			break;
		case 'P': cfg.slurm_poll_ms = (int)parse_num("--slurm-poll-ms", optarg, 50, 600000); break;
		case 'D': cfg.slurm_log_dir = absolute(optarg); break;
		case 't': cfg.telemetry_hz = (int)parse_num("--telemetry-hz", optarg, 1, 1000); break;
		case 'l':
			cfg.log.level = log_level_parse(optarg);
			if (cfg.log.level == ORCH_LOG_OFF) {
				fprintf(stderr, "orchfs: --log-level %s: error, warn, info or debug\n", optarg);
				options_free(&cfg, &api);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("orchfs %s\n", ORCHFS_VERSION); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		options_free(&cfg, &api);
		return 2;
	}
	if (cfg.max_workers < 1)
		cfg.max_workers = 1;
	if (!cfg.state_dir)
		cfg.state_dir = daemon_default_state_dir();
	char cwd[PATH_MAX];
	cfg.workdir = xstrdup(getcwd(cwd, sizeof cwd) ? cwd : "/");

	/* before anything is made: a user without FUSE is told what to fix */
	if (fs_access_check(stderr)) {
		options_free(&cfg, &api);
		return 1;
	}
	const char *mnt_arg = argv[optind];
	clean_stale_mount(mnt_arg);
	char real[PATH_MAX];
	if (!realpath(mnt_arg, real)) {
		fprintf(stderr, "orchfs: mountpoint %s: %s\n", mnt_arg, strerror(errno));
		options_free(&cfg, &api);
		return 1;
	}
	cfg.mount = xstrdup(real);

	/* A second orchfs on a live one's mount would hide it, or get a bare
	 * FUSE error: say whose it is instead, before its state directory (and
	 * store) is made for nothing. */
	pid_t holder;
	char holder_dir[PATH_MAX];
	if (daemon_serving(cfg.mount, &holder, holder_dir, sizeof holder_dir)) {
		if (holder)
			fprintf(stderr, "orchfs: %s is served by orchfs pid %d (state dir %s); stop it "
				"with: fusermount3 -u %s\n", cfg.mount, (int)holder, holder_dir, cfg.mount);
		else
			fprintf(stderr, "orchfs: %s is served by another orchfs; stop it with: "
				"fusermount3 -u %s\n", cfg.mount, cfg.mount);
		options_free(&cfg, &api);
		return 1;
	}
	/* Problems with the state directory are reported here, before the daemon
	 * detaches; the store is opened for real after the fork (an SQLite
	 * connection must not cross one). */
	if (state_dir_check(cfg.state_dir, foreground, &err)) {
		fprintf(stderr, "orchfs: %s\n", err.message);
		options_free(&cfg, &api);
		return 1;
	}
	bool api_on = !api.http.off || !api.ws.off;
	api.telemetry_hz = cfg.telemetry_hz;
	if (api_on && !api.no_auth && !cfg.token_file) {
		struct buf t = BUF_INIT;
		buf_printf(&t, "%s/token", cfg.state_dir);
		cfg.token_file = buf_steal(&t);
	}
	api.token_file = cfg.token_file;
	if (api_on && api_check(&api, &err)) {
		fprintf(stderr, "orchfs: %s\n", err.message);
		options_free(&cfg, &api);
		return api.no_auth ? 2 : 1;
	}
	if (api_on && !api.no_auth) {
		/* workers are given tokens of their own, made from it */
		char token[AUTH_TOKEN_HEX + 1];
		if (auth_load_token(cfg.token_file, false, token, &err)) {
			fprintf(stderr, "orchfs: %s\n", err.message);
			options_free(&cfg, &api);
			return 1;
		}
		cfg.api_token = xstrdup(token);
	}
	if (!api.http.off)
		cfg.api_url = listen_url(api.tls_cert ? "https" : "http", &api.http);
	/* the dashboard: a --web-root given that cannot be served is an error;
	 * the installed default that is not there (a build run from its tree)
	 * only leaves the dashboard off, said in the log */
	char web_off[PATH_MAX + 64] = "off (--web-root off)";
	if (!api.http.off && web_dir) {
		char *web_real = NULL;
		if (api_web_root(web_dir, &web_real, &err)) {
			if (web_given) {
				fprintf(stderr, "orchfs: --web-root %s\n", err.message);
				options_free(&cfg, &api);
				return 2;
			}
			snprintf(web_off, sizeof web_off, "off (%s)", err.message);
		}
		api.web_root = web_real;
	}
	/* Opened before the fork, while a failure can still be told. */
	char *log_path = NULL;
	int log_fd = -1;
	if (!foreground) {
		struct buf lp = BUF_INIT;
		buf_printf(&lp, "%s/orchfs.log", cfg.state_dir);
		log_path = buf_steal(&lp);
		log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW,
			      0600);
		if (log_fd < 0 || fchmod(log_fd, 0600) < 0) {
			fprintf(stderr, "orchfs: cannot open the log %s: %s\n", log_path, strerror(errno));
			free(log_path);
			options_free(&cfg, &api);
			return 1;
		}
	}
	/* A document of many MiB is a buffer for as long as it is read. With a
	 * fixed threshold such buffers are always mapped and given back when
	 * freed; glibc's default raises the threshold after the first one and
	 * keeps each freed one in the arena of whichever of the FUSE threads read
	 * it, so memory would grow with the readers instead of the reads. */
	mallopt(M_MMAP_THRESHOLD, 512 * 1024);
	mallopt(M_ARENA_MAX, 4);
	struct orch o;
	memset(&o, 0, sizeof o);
	o.cfg = cfg;   /* fs_init reads max_write before orch_init runs */
	struct fs *fs = fs_create(&o);
	char *fuse_argv[] = {argv[0], (char *)"-o",
			     (char *)"fsname=orchfs,subtype=orchfs", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
	struct fuse_session *se = fuse_session_new(&args, fs_ops(), sizeof *fs_ops(), fs);
	struct stream_hub *hub = NULL;
	struct notifier *notifier = NULL;
	int status = 1;
	bool started = false;
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, cfg.mount) != 0)
		goto out_signals;
	signal(SIGPIPE, SIG_IGN);
	dashboard_tell(&api, cfg.api_url, cfg.api_token);
	/* Threads are started after the fork of daemonizing, or they would be lost. */
	fuse_daemonize(foreground);
	if (log_fd >= 0) {
		/* stderr is the log from now on: what libraries print lands there
		 * too, instead of in /dev/null */
		dup2(log_fd, STDERR_FILENO);
		close(log_fd);
	} else {
		log_use_stderr(&cfg.log);   /* -f: a stderr nobody reads stalls nothing */
	}
	int64_t started_ms = time_now_ms();
	log_info(&cfg.log, "orchfs %s starting (pid %d, state dir %s)", ORCHFS_VERSION, (int)getpid(),
		 cfg.state_dir);
	log_info(&cfg.log, "mounted on %s", cfg.mount);
	if (orch_init(&o, &cfg, &err)) {
		log_error(&cfg.log, "cannot start: %s", err.message);
		free(log_path);
		fuse_session_unmount(se);
		fuse_remove_signal_handlers(se);
		fuse_session_destroy(se);
		fs_destroy(fs);
		options_free(&cfg, &api);
		return 1;
	}
	started = true;
	/* the state directory is ours now (its lock): name the daemon in it */
	if (daemon_pid_write(cfg.state_dir, getpid(), &err))
		log_error(&cfg.log, "%s", err.message);
	if (orch_start(&o) != 0) {
		log_error(&cfg.log, "cannot start the scheduler");
		goto out_unmount;
	}
	struct api *server = NULL;
	if (api_on && api_start(&o, &api, &server, &err))
		log_error(&cfg.log, "the API is off: %s", err.message);
	char *ws_url = server && !api.ws.off ? listen_url(api.tls_cert ? "wss" : "ws", &api.ws)
					     : NULL;
	const char *http_url = server ? cfg.api_url : NULL;
	const char *token_file = server && !api.no_auth ? cfg.token_file : NULL;
	log_info(&cfg.log, "http: %s", http_url ? http_url : "off");
	log_info(&cfg.log, "ws: %s", ws_url ? ws_url : "off");
	if (http_url && api.web_root)
		log_info(&cfg.log, "dashboard: %s/ (the token: STATE_DIR/token, or the URL printed at "
			 "start on a terminal)", http_url);
	else if (http_url)
		log_info(&cfg.log, "dashboard: %s", web_off);
	if (token_file)
		log_info(&cfg.log, "token file: %s", token_file);
	else if (server)
		log_info(&cfg.log, "no token (--no-auth)");
	hub = stream_hub_start(&o);
	notifier = notifier_start(&o, fs, cfg.mount);
	fs_attach(fs, se, hub, notifier);
	/* everything is up: whatever looks for the daemon may find it now */
	struct daemon_info info = {getpid(), cfg.mount, cfg.state_dir, http_url, ws_url, token_file,
				   log_path, started_ms};
	if (daemon_info_write(&info, &err))
		log_error(&cfg.log, "%s", err.message);
	free(ws_url);
	/* systemd (Type=notify): the mount and the listeners are up */
	int nrc = sd_notify_state("READY=1");
	if (nrc)
		log_error(&cfg.log, "cannot tell NOTIFY_SOCKET we are ready: %s", strerror(-nrc));
	struct fuse_loop_config *loop = fuse_loop_cfg_create();
	/* libfuse's default: no handler waits long (a read of `events` with
	 * nothing to read is parked, a write waits for one journal write), and
	 * more threads than that only contend for the CPUs (64 writers at once
	 * on 2 CPUs: 0.49x the minimal FUSE fs with 64 threads, 0.58x with 10) */
	fuse_loop_cfg_set_max_threads(loop, FS_MAX_THREADS);
	/* a crowd of readers grows the pool; once they are gone, all but this
	 * many idle threads end (libfuse's default keeps every one) */
	fuse_loop_cfg_set_idle_threads(loop, FS_IDLE_THREADS);
	status = fuse_session_loop_mt(se, loop) < 0 ? 1 : 0;
	log_info(&cfg.log, "stopping");
	fs_detach(fs);
	fuse_loop_cfg_destroy(loop);
	stream_hub_stop(hub);   /* parked readers get EOF while the session can still reply */
	api_stop(server);
out_unmount:
	daemon_info_remove(cfg.state_dir);
	/* Unmount first: a worker that touches the mount while we stop it gets
	 * ENOENT instead of hanging on a daemon that no longer answers. */
	fuse_session_unmount(se);
	orch_shutdown(&o);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	/* Only now: a call the notifier had in flight on the mount fails once the
	 * session's device is closed, so it can always be joined. */
	notifier_stop(notifier);
out:
	fs_destroy(fs);
	if (started) {
		/* before the lock goes with the store: the next daemon's is its own */
		daemon_pid_remove(cfg.state_dir);
		orch_destroy(&o);
		log_info(&cfg.log, "stopped (exit status %d)", status);
	}
	free(log_path);
	options_free(&cfg, &api);
	return status;
}
