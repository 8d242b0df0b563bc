/*
 * hello_fs: the baseline FUSE file system for tests/bench/bench_read.sh.
 *
 * One read-only file, /status, containing "running\n" (mode 0444), and one
 * that takes writes, /ctl (0600, direct_io, each write accepted whole and
 * dropped, flush answered). It answers lookup, getattr, readdir, open, read,
 * write and flush through the low-level API with 1.0 s attr/entry timeouts,
 * an open of status that keeps direct_io and keep_cache off, and the
 * multithreaded loop: "a FUSE fs that answers open and read" (or write),
 * against which orchfs's status files and control writes are compared.
 *
 *   cc -std=gnu11 -Wall -Wextra hello_fs.c -o hello_fs $(pkg-config --cflags --libs fuse3)
 *   mkdir -p /tmp/h && ./hello_fs -f /tmp/h & sleep 0.5; cat /tmp/h/status
 *   fusermount3 -u /tmp/h
 */
#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HELLO_TIMEOUT 1.0

enum { INO_ROOT = FUSE_ROOT_ID, INO_STATUS = 2, INO_CTL = 3 };

static const char status_name[] = "status";
static const char ctl_name[] = "ctl";
static const char status_text[] = "running\n";

static int fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	switch (ino) {
	case INO_ROOT:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case INO_STATUS:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)(sizeof status_text - 1);
		return 0;
	case INO_CTL:
		st->st_mode = S_IFREG | 0600;
		st->st_nlink = 1;
		return 0;
	default:
		return -ENOENT;
	}
}

static void hello_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	fuse_ino_t ino = strcmp(name, status_name) == 0 ? INO_STATUS
			 : strcmp(name, ctl_name) == 0 ? INO_CTL : 0;
	if (parent != INO_ROOT || !ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof e);
	e.ino = ino;
	e.attr_timeout = HELLO_TIMEOUT;
	e.entry_timeout = HELLO_TIMEOUT;
	fill_stat(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void hello_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (fill_stat(ino, &st) < 0)
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, HELLO_TIMEOUT);
}

/* Append one entry to buf; returns the new length, or len if it did not fit. */
static size_t add_entry(fuse_req_t req, char *buf, size_t len, size_t cap,
			const char *name, fuse_ino_t ino, off_t next)
{
	struct stat st;
	size_t need;

	memset(&st, 0, sizeof st);
	st.st_ino = ino;
	st.st_mode = ino == INO_ROOT ? S_IFDIR : S_IFREG;
	need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
	if (len + need > cap)
		return len;
	fuse_add_direntry(req, buf + len, cap - len, name, &st, next);
	return len + need;
}

static void hello_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			  struct fuse_file_info *fi)
{
	static const struct { const char *name; fuse_ino_t ino; } ents[] = {
		{ ".", INO_ROOT }, { "..", INO_ROOT }, { status_name, INO_STATUS }, { ctl_name, INO_CTL },
	};
	char buf[512];
	size_t cap = size < sizeof buf ? size : sizeof buf;
	size_t len = 0;

	(void)fi;
	if (ino != INO_ROOT) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (off_t i = off < 0 ? 0 : off; i < (off_t)(sizeof ents / sizeof ents[0]); i++) {
		size_t n = add_entry(req, buf, len, cap, ents[i].name, ents[i].ino, i + 1);
		if (n == len)
			break;
		len = n;
	}
	fuse_reply_buf(req, len ? buf : NULL, len);
}

static void hello_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == INO_ROOT) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (ino == INO_CTL) {
		fi->direct_io = 1;
		fuse_reply_open(req, fi);
		return;
	}
	if (ino != INO_STATUS) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EACCES);
		return;
	}
	fi->direct_io = 0;
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void hello_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	const size_t total = sizeof status_text - 1;

	(void)fi;
	if (ino != INO_STATUS) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (off < 0 || (size_t)off >= total) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > total - (size_t)off)
		size = total - (size_t)off;
	fuse_reply_buf(req, status_text + off, size);
}

static void hello_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	(void)buf;
	(void)off;
	(void)fi;
	if (ino != INO_CTL)
		fuse_reply_err(req, EACCES);
	else
		fuse_reply_write(req, size);
}

static void hello_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops hello_ops = {
	.lookup = hello_lookup,
	.getattr = hello_getattr,
	.readdir = hello_readdir,
	.open = hello_open,
	.read = hello_read,
	.write = hello_write,
	.flush = hello_flush,
};

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts opts;
	struct fuse_session *se = NULL;
	struct fuse_loop_config *cfg = NULL;
	int ret = 1;

	memset(&opts, 0, sizeof opts);
	if (fuse_parse_cmdline(&args, &opts) != 0)
		goto out;
	if (opts.show_help || opts.show_version || !opts.mountpoint) {
		fprintf(stderr, "usage: %s [-f] [-d] MOUNTPOINT\n", argv[0]);
		ret = opts.show_help || opts.show_version ? 0 : 2;
		goto out;
	}
	se = fuse_session_new(&args, &hello_ops, sizeof hello_ops, NULL);
	if (!se)
		goto out;
	if (fuse_set_signal_handlers(se) != 0)
		goto out_session;
	if (fuse_session_mount(se, opts.mountpoint) != 0)
		goto out_signals;
	if (fuse_daemonize(opts.foreground) != 0)
		goto out_unmount;
	cfg = fuse_loop_cfg_create();
	if (!cfg)
		goto out_unmount;
	fuse_loop_cfg_set_clone_fd(cfg, (unsigned int)opts.clone_fd);
	if (opts.max_threads)
		fuse_loop_cfg_set_max_threads(cfg, opts.max_threads);
	ret = fuse_session_loop_mt(se, cfg) != 0;
	fuse_loop_cfg_destroy(cfg);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:
	free(opts.mountpoint);
	fuse_opt_free_args(&args);
	return ret;
}
