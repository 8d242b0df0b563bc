/* ops: FUSE low-level operations over the node table.
 *   orchfs -f /tmp/o & cat /tmp/o/mma/pipeline/status
 * Inodes are interned paths, never freed (paths are short and ids are never
 * reused, so the table only grows with the namespace). The kernel keeps
 * entries and attributes for long (fs_timeout); a committed change drops the
 * ones it touched before it is acknowledged (fs_drop_cached). Documents are
 * rendered once per open and read from that snapshot; every file is
 * direct_io, so sizes never gate reads and `cat` always sees the whole
 * document (a control file says FS_CTL_SIZE, whatever it reads). (Not the
 * page cache, even for a one-word status: the notifier's truncate sets the
 * kernel's size of a file to what it is answered with, whatever changed
 * meanwhile, and a reader of pages sized that way would get a status cut
 * short or padded with NULs.) */
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nodes.h"
#include "notify.h"
#include "store.h"
#include "stream.h"
#include "telemetry.h"

struct fs_inode {
	char *path;
	/* The entries the kernel holds (lookups answered, less forgets): none,
	 * and no inotify watch can be on it either (a watch holds the inode). */
	uint64_t nlookup;
};

struct fs {
	struct orch *o;
	pthread_mutex_t lock;      /* guards the inode table */
	struct fs_inode **inodes;  /* inodes[ino - 1] */
	size_t n, cap;
	struct hashmap *by_path;   /* path -> (void *)ino */
	uid_t uid;
	gid_t gid;
	struct stream_hub *hub;
	struct notifier *notifier;
	struct fuse_session *se;   /* for the kernel's cache: set while it runs */
	struct fs_file *files;     /* open files, under lock */
	/* What the store's group being written touched, each path once: path ->
	 * (void *)(1 << enum node_touch). Its writer's alone (fs_committed). */
	struct hashmap *touched;
};

struct fs_file {
	struct node node;
	char *path;
	/* The kernel's handle is one reference, each handler at work on the file
	 * another: a read cut short by a fatal signal lets the kernel release
	 * the file while its handler still runs. Atomic (fs_ref). */
	int refs;
	pthread_mutex_t lock;      /* guards data, has_result, result_base */
	struct buf data;           /* the snapshot, or the last write's result */
	bool has_result;
	off_t result_base;         /* file offset where the result starts */
	int logfd;
	struct fs_stream *stream;  /* the events file */
	/* A command written in pieces (cat writes 128 KiB at a time, bash's
	 * printf 4 KiB): the pieces so far, from file offset pending_off, under
	 * lock. Applied once, whole, when a piece ends it (see fs_write), or at
	 * the next read, write elsewhere, or close (whose error close(2) reports). */
	struct buf pending;
	off_t pending_off;
	bool pending_open;         /* pending holds a command not applied yet */
	bool oversize;             /* a command passed the limit: the rest of its
				    * pieces, and all later writes, are refused too */
	uint64_t announce_seq;     /* a large change made here ends at this event (0: none) */
	uint64_t unsynced;         /* --durable: the ticket of the last commit made here
				    * and not yet known on the disk (0: none), under lock */
	struct fs_file *prev, *next;   /* fs.files: what is still open at shutdown is freed */
};

struct fs_dir {
	struct buf entries;        /* fuse_add_direntry records */
	/* where record i starts; starts[n] is the end. A readdir offset is a
	 * cookie issued here, the ordinal of the entry to resume at, never a
	 * byte position: seekdir(3) may hand back any number. */
	size_t *starts, n, cap;
	int refs;                  /* as fs_file's */
};

/* The references of open files and directories (atomic): n is added, and
 * whether that left none is the answer. */
static bool fs_ref(int *refs, int n)
{
	return __atomic_add_fetch(refs, n, __ATOMIC_ACQ_REL) == 0;
}

static struct fs_dir *fs_dir_hold(struct fs *fs, struct fuse_file_info *fi)
{
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
	fs_ref(&d->refs, 1);
	return d;
}

static void fs_dir_put(struct fs *fs, struct fs_dir *d)
{
	if (fs_ref(&d->refs, -1)) {
		buf_free(&d->entries);
		free(d->starts);
		free(d);
	}
}

#define ENTRY_TIMEOUT 3600.0
/* A change of more events than this is announced before its close returns
 * (fs_settle), waiting at most FS_ANNOUNCE_WAIT_MS. */
#define FS_ANNOUNCE_AT_CLOSE 64
#define FS_ANNOUNCE_WAIT_MS 10000
/* A control file's size, whatever it reads: a sysfs attribute's, so that a
 * command (up to this long) never writes past the end (fs_reply_open). */
#define FS_CTL_SIZE 4096

static __thread bool thread_named;

static struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static fuse_ino_t fs_intern(struct fs *fs, const char *path)
{
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t ino = (fuse_ino_t)(uintptr_t)hashmap_get(fs->by_path, path);
	if (!ino) {
		if (fs->n == fs->cap) {
			fs->cap = fs->cap ? fs->cap * 2 : 256;
			fs->inodes = xrealloc(fs->inodes, fs->cap * sizeof *fs->inodes);
		}
		struct fs_inode *in = xcalloc(1, sizeof *in);
		in->path = xstrdup(path);
		fs->inodes[fs->n++] = in;
		ino = fs->n;
		hashmap_put(fs->by_path, path, (void *)(uintptr_t)ino);
	}
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

/* An entry of ino answered: the kernel holds it until it forgets it. (One
 * whose answer the kernel never got is counted all the same: announcing a
 * file nobody holds costs a little, missing one would not be right.) */
static fuse_ino_t fs_held(struct fs *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	fs->inodes[ino - 1]->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return ino;
}

/* fs.lock held: the inode of path's directory (0: never interned), and
 * path's last component in *name */
static fuse_ino_t parent_of(struct fs *fs, const char *path, const char **name)
{
	char dirpath[1024];
	const char *slash = strrchr(path, '/');
	snprintf(dirpath, sizeof dirpath, "%.*s", slash ? (int)(slash - path) : 0, path);
	*name = slash ? slash + 1 : path;
	return (fuse_ino_t)(uintptr_t)hashmap_get(fs->by_path, dirpath);
}

bool fs_kernel_may_watch(struct fs *fs, const char *path)
{
	const char *name;
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t ino = (fuse_ino_t)(uintptr_t)hashmap_get(fs->by_path, path);
	fuse_ino_t parent = parent_of(fs, path, &name);
	bool known = (ino && fs->inodes[ino - 1]->nlookup > 0) ||
		     (parent && fs->inodes[parent - 1]->nlookup > 0);
	pthread_mutex_unlock(&fs->lock);
	return known;
}

static void fs_forget_n(struct fs *fs, fuse_ino_t ino, uint64_t n)
{
	pthread_mutex_lock(&fs->lock);
	if (ino >= 1 && ino <= fs->n) {
		struct fs_inode *in = fs->inodes[ino - 1];
		in->nlookup = in->nlookup > n ? in->nlookup - n : 0;
	}
	pthread_mutex_unlock(&fs->lock);
}

static struct fs_inode *fs_inode(struct fs *fs, fuse_ino_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct fs_inode *in = ino >= 1 && ino <= fs->n ? fs->inodes[ino - 1] : NULL;
	pthread_mutex_unlock(&fs->lock);
	return in;
}

struct fs *fs_create(struct orch *o)
{
	struct fs *fs = xcalloc(1, sizeof *fs);
	fs->o = o;
	pthread_mutex_init(&fs->lock, NULL);
	fs->by_path = hashmap_new();
	fs->touched = hashmap_new();
	fs->uid = getuid();
	fs->gid = getgid();
	fs_held(fs, fs_intern(fs, ""));   /* FUSE_ROOT_ID == 1: held while mounted */
	return fs;
}

/* The kernel keeps entries and attributes long (fs_timeout); each change
 * drops what it touched. inval_entry for an entry that went (a removed task is
 * gone at once), inval_inode (attributes only: documents are direct_io) for
 * a file whose bytes changed. Only what the kernel holds now can be cached
 * (nlookup: counted before a lookup takes the attributes, so a lookup this
 * passes over sees the change), so a file nobody looked up, or that the
 * kernel forgot, costs no system call. Runs on the store's writer (its
 * thread, or the FUSE handler whose write leads the commit), which holds no
 * lock a FUSE handler could wait for. */
static void fs_drop_cached(struct fs *fs, enum node_touch how, const char *path)
{
	const char *name;
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t ino = (fuse_ino_t)(uintptr_t)hashmap_get(fs->by_path, path);
	fuse_ino_t parent = how == NODE_GONE && strchr(path, '/') ? parent_of(fs, path, &name) : 0;
	if (ino && !fs->inodes[ino - 1]->nlookup)
		ino = 0;
	if (parent && !fs->inodes[parent - 1]->nlookup)
		parent = 0;   /* no entry under a directory the kernel does not hold */
	pthread_mutex_unlock(&fs->lock);
	if (parent)
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
	else if (ino && how == NODE_MODIFIED)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

void fs_let_go(struct fs *fs, const char *path)
{
	const char *name;
	pthread_mutex_lock(&fs->lock);
	fuse_ino_t parent = parent_of(fs, path, &name);
	pthread_mutex_unlock(&fs->lock);
	if (parent && fs->se)
		fuse_lowlevel_notify_inval_entry(fs->se, parent, name, strlen(name));
}

static void fs_gather_touched(void *arg, enum node_touch how, const char *path, bool dir)
{
	struct fs *fs = arg;
	if (how == NODE_BORN)
		return;   /* the kernel keeps no negative entries: nothing to drop */
	uintptr_t hows = (uintptr_t)hashmap_get(fs->touched, path);
	hashmap_put(fs->touched, path, (void *)(hows | (uintptr_t)1 << how));
}

static void fs_drop_touched(void *arg, const char *path, void *value)
{
	uintptr_t hows = (uintptr_t)value;
	if (hows & (uintptr_t)1 << NODE_GONE)
		fs_drop_cached(arg, NODE_GONE, path);
	if (hows & (uintptr_t)1 << NODE_MODIFIED)
		fs_drop_cached(arg, NODE_MODIFIED, path);
}

/* A group's events name the same files again and again (state.json, in
 * each of a task's events): they are gathered, and dropped once at its end
 * (a task's start and end made 14 calls, now under one). */
static void fs_committed(void *arg, const struct event_rec *rec)
{
	struct fs *fs = arg;
	if (rec) {
		struct node_change c = node_change_of(rec);
		node_touched(&c, fs_gather_touched, fs);
	} else {
		/* a clear walks the map's whole table: one grown by a big group (a
		 * plan of thousands of tasks) is not kept for the small ones after */
		bool big = hashmap_size(fs->touched) > 256;
		hashmap_clear_each(fs->touched, fs_drop_touched, fs);
		if (big) {
			hashmap_free(fs->touched);
			fs->touched = hashmap_new();
		}
	}
}

void fs_attach(struct fs *fs, struct fuse_session *se, struct stream_hub *hub,
	       struct notifier *notifier)
{
	fs->se = se;
	fs->hub = hub;
	fs->notifier = notifier;
	if (fs->o->store)
		store_set_hook(fs->o->store, fs_committed, fs);
}

void fs_detach(struct fs *fs)
{
	if (fs->o->store)
		store_set_hook(fs->o->store, NULL, NULL);
}

/* Unlinks and frees an open file. Its stream, if any, is the hub's to free
 * when the hub is already gone (release_stream false). */
static void fs_file_free(struct fs *fs, struct fs_file *f, bool release_stream)
{
	pthread_mutex_lock(&fs->lock);
	if (f->prev)
		f->prev->next = f->next;
	else if (fs->files == f)
		fs->files = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&fs->lock);
	if (f->logfd >= 0)
		close(f->logfd);
	if (f->stream && release_stream)
		stream_release(fs->hub, f->stream);
	buf_free(&f->data);
	buf_free(&f->pending);
	pthread_mutex_destroy(&f->lock);
	free(f->path);
	free(f);
}

static struct fs_file *fs_file_hold(struct fs *fs, struct fuse_file_info *fi)
{
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
	fs_ref(&f->refs, 1);
	return f;
}

static void fs_file_put(struct fs *fs, struct fs_file *f)
{
	if (fs_ref(&f->refs, -1))
		fs_file_free(fs, f, true);
}

void fs_destroy(struct fs *fs)
{
	while (fs->files)
		fs_file_free(fs, fs->files, false);
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->inodes[i]->path);
		free(fs->inodes[i]);
	}
	free(fs->inodes);
	hashmap_free(fs->by_path);
	hashmap_free(fs->touched);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

/* sized: a document's size is its render's. The notifier's calls are answered
 * without (size 0, never cached): they exist for the inotify event alone, and
 * a render there would make every announcement cost what the document does.
 * A volatile document says 0 always, as procfs files do: its bytes differ at
 * every read, and a stat (ls -l) must not cost a render of state.json. */
static int fs_stat(struct fs *fs, fuse_ino_t ino, const struct node *n, struct stat *st,
		   bool sized)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = node_mode(n);
	st->st_nlink = node_type(n) == NODE_DIR ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_blksize = 4096;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	st->st_atim = st->st_mtim = st->st_ctim = now;
	unsigned flags = node_flags(n);
	if (node_type(n) == NODE_LINK) {
		struct buf target = BUF_INIT;
		int rc = node_readlink(fs->o, n, &target);
		st->st_size = (off_t)target.len;
		buf_free(&target);
		return rc;
	}
	if (flags & NODE_LOG) {
		char *path;
		int rc = node_log_path(fs->o, n, &path);
		if (rc)
			return rc;
		struct stat real;
		if (stat(path, &real) == 0) {
			st->st_size = real.st_size;
			st->st_mtim = real.st_mtim;
		}
		free(path);
	} else if (flags & NODE_CTL) {
		st->st_size = FS_CTL_SIZE;   /* see fs_reply_open */
	} else if ((flags & NODE_DOC) && !(flags & NODE_VOLATILE) && sized) {
		struct buf b = BUF_INIT;
		int rc = node_render_cached(fs->o, n, &b);
		st->st_size = (off_t)b.len;
		buf_free(&b);
		if (rc)
			return rc;
	}
	st->st_blocks = (st->st_size + 511) / 512;
	return 0;
}

/* How long the kernel may keep an entry and its attributes. Ids are never
 * reused and every change a file sees is announced by the notifier, whose
 * calls drop the kernel's copy (an entry that goes is removed, a file that
 * changes is truncated, which refreshes its attributes): so all may be kept
 * long, but a log (it grows unannounced between the notifier's looks) and a
 * volatile document (it changes without an event). */
static double fs_timeout(const struct node *n)
{
	return node_flags(n) & (NODE_LOG | NODE_VOLATILE) ? 0 : ENTRY_TIMEOUT;
}

/* Every handler is timed for telemetry; the first one a thread runs names it. */
#define OP_BEGIN(kind)                                                   \
	struct fs *fs = fs_of(req);                                      \
	int64_t op_t0 = time_mono_ns();                                  \
	enum tm_op op_kind = (kind);                                     \
	if (!thread_named) {                                             \
		pthread_setname_np(pthread_self(), "orchfs-fuse");       \
		thread_named = true;                                     \
	}
#define OP_END(rc) tm_fuse_op(fs->o->tm, op_kind, time_mono_ns() - op_t0, (rc) != 0)

static int path_join(const char *parent, const char *name, char *out, size_t size)
{
	int n = parent[0] ? snprintf(out, size, "%s/%s", parent, name)
			  : snprintf(out, size, "%s", name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	OP_BEGIN(TM_LOOKUP);
	struct fs_inode *pin = fs_inode(fs, parent);
	char path[1024];
	struct node n;
	struct fuse_entry_param e = {0};
	int rc = !pin ? -ENOENT : path_join(pin->path, name, path, sizeof path);
	enum notify_intent intent;
	const char *target;
	if (!rc && notifier_owns(fs->notifier, req, &intent, &target) && !strcmp(target, path)) {
		/* The notifier's mkdir/mknod must find no entry, its rmdir/unlink one. */
		if (intent == NOTIFY_CREATE) {
			OP_END(0);
			fuse_reply_err(req, ENOENT);
			return;
		}
		if (intent == NOTIFY_DELETE) {
			e.ino = fs_held(fs, fs_intern(fs, path));
			e.attr.st_ino = e.ino;
			/* what goes away: task dirs, and context entries (files) */
			e.attr.st_mode = strncmp(path, "context/files/", 14) ? S_IFDIR | 0555
									      : S_IFREG | 0444;
			e.attr.st_nlink = 1;
			OP_END(0);
			fuse_reply_entry(req, &e);
			return;
		}
	}
	bool from_notifier = !rc && notifier_owns(fs->notifier, req, NULL, NULL);
	if (!rc)
		rc = node_resolve(fs->o, path, &n);
	if (!rc) {
		/* held before its attributes are taken: a change the notifier
		 * passes over as unheld came before them */
		e.ino = fs_held(fs, fs_intern(fs, path));
		rc = fs_stat(fs, e.ino, &n, &e.attr, !from_notifier);
		if (rc)
			fs_forget_n(fs, e.ino, 1);
	}
	OP_END(rc);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	e.entry_timeout = fs_timeout(&n);
	e.attr_timeout = from_notifier ? 0 : e.entry_timeout;
	fuse_reply_entry(req, &e);
}

static int resolve_ino(struct fs *fs, fuse_ino_t ino, struct fs_inode **in, struct node *n)
{
	*in = fs_inode(fs, ino);
	return *in ? node_resolve(fs->o, (*in)->path, n) : -ENOENT;
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(TM_GETATTR);
	struct fs_inode *in;
	struct node n;
	struct stat st;
	int rc = resolve_ino(fs, ino, &in, &n);
	if (!rc)
		rc = fs_stat(fs, ino, &n, &st, true);
	OP_END(rc);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, fs_timeout(&n));
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	OP_BEGIN(TM_SETATTR);
	struct fs_inode *in;
	struct node n;
	struct stat st;
	int rc = resolve_ino(fs, ino, &in, &n);
	bool from_notifier = notifier_owns(fs->notifier, req, NULL, NULL);
	/* O_TRUNC from `echo x > ctl` and `touch` are harmless on control files;
	 * anything else would pretend to change what the daemon owns. The
	 * notifier's truncate only exists to raise IN_MODIFY. */
	if (!rc && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = -EPERM;
	if (!rc && (to_set & FUSE_SET_ATTR_SIZE) && !from_notifier &&
	    !(node_flags(&n) & (NODE_CTL | NODE_STREAM)))
		rc = -EACCES;
	if (!rc)
		rc = fs_stat(fs, ino, &n, &st, !from_notifier);
	OP_END(rc);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &st, 0);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	OP_BEGIN(TM_READLINK);
	struct fs_inode *in;
	struct node n;
	struct buf target = BUF_INIT;
	int rc = resolve_ino(fs, ino, &in, &n);
	if (!rc)
		rc = node_readlink(fs->o, &n, &target);
	OP_END(rc);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, target.data);
	buf_free(&target);
}

struct dir_fill {
	struct fs *fs;
	fuse_req_t req;
	const char *path;
	struct fs_dir *d;
};

static void dir_add(struct dir_fill *f, const char *name, fuse_ino_t ino, mode_t mode)
{
	struct fs_dir *d = f->d;
	struct stat st = {.st_ino = ino, .st_mode = mode};
	size_t need = fuse_add_direntry(f->req, NULL, 0, name, NULL, 0);
	buf_reserve(&d->entries, need);
	ARRAY_GROW(d->starts, d->cap, d->n + 2);
	d->starts[d->n++] = d->entries.len;
	/* the offset of an entry is the cookie of the next: where to resume */
	fuse_add_direntry(f->req, d->entries.data + d->entries.len, need, name, &st,
			  (off_t)d->n);
	d->entries.len += need;
	d->starts[d->n] = d->entries.len;
}

static void dir_child(void *arg, const char *name, const struct node *child)
{
	struct dir_fill *f = arg;
	char path[1024];
	if (path_join(f->path, name, path, sizeof path))
		return;
	dir_add(f, name, fs_intern(f->fs, path), node_mode(child));
}

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(TM_OPENDIR);
	struct fs_inode *in;
	struct node n;
	int rc = resolve_ino(fs, ino, &in, &n);
	if (!rc && node_type(&n) != NODE_DIR)
		rc = -ENOTDIR;
	struct fs_dir *d = NULL;
	if (!rc) {
		/* The whole listing is taken at opendir: a consistent snapshot, like a document. */
		d = xcalloc(1, sizeof *d);
		d->refs = 1;
		struct dir_fill f = {fs, req, in->path, d};
		dir_add(&f, ".", ino, S_IFDIR);
		dir_add(&f, "..", FUSE_ROOT_ID, S_IFDIR);  /* the kernel fills in the real parent */
		rc = node_list(fs->o, &n, dir_child, &f);
	}
	OP_END(rc);
	if (rc) {
		if (d)
			fs_dir_put(fs, d);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	OP_BEGIN(TM_READDIR);
	struct fs_dir *d = fs_dir_hold(fs, fi);
	OP_END(0);
	if (off < 0 || (size_t)off >= d->n) {   /* the end, or no cookie of ours */
		fs_dir_put(fs, d);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* whole records only, as many as fit in size */
	size_t first = (size_t)off, last = first;
	while (last < d->n && d->starts[last + 1] - d->starts[first] <= size)
		last++;
	fuse_reply_buf(req, d->entries.data + d->starts[first], d->starts[last] - d->starts[first]);
	fs_dir_put(fs, d);   /* after the reply: it is read from entries */
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_dir_put(fs_of(req), (struct fs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

/* fuse_reply_open, and for a control file parallel writes as well: the kernel
 * otherwise holds the file's lock for the whole of each write, so writers of
 * one control file would queue there one by one and never meet in the
 * store's group commit. It lets writes that end within the file's size run
 * at once, hence FS_CTL_SIZE. libfuse 3.14's fuse_file_info has no bit for
 * it; the reply is the same 16 bytes fuse_reply_open sends. */
static void fs_reply_open(fuse_req_t req, const struct fuse_file_info *fi, bool parallel_writes)
{
	struct fuse_open_out out = {.fh = fi->fh};
	out.open_flags = (fi->direct_io ? FOPEN_DIRECT_IO : 0) | (fi->noflush ? FOPEN_NOFLUSH : 0) |
			 (fi->nonseekable ? FOPEN_NONSEEKABLE : 0) |
			 (parallel_writes ? FOPEN_PARALLEL_DIRECT_WRITES : 0);
	fuse_reply_buf(req, (const char *)&out, sizeof out);
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(TM_OPEN);
	struct fs_inode *in;
	struct node n;
	int rc = resolve_ino(fs, ino, &in, &n);
	int acc = fi->flags & O_ACCMODE;
	unsigned flags = rc ? 0 : node_flags(&n);
	if (!rc && node_type(&n) == NODE_DIR)
		rc = -EISDIR;
	if (!rc && acc != O_RDONLY && !(flags & (NODE_CTL | NODE_STREAM))) {
		/* recorded like any failed write, for shells that only say "I/O error" */
		struct buf ignored = BUF_INIT;
		rc = node_write_error(fs->o, in->path, EACCES, "this file is read-only", &ignored);
		buf_free(&ignored);
	}
	struct fs_file *f = NULL;
	if (!rc) {
		f = xcalloc(1, sizeof *f);
		f->node = n;
		f->path = xstrdup(in->path);
		f->logfd = -1;
		f->refs = 1;
		pthread_mutex_init(&f->lock, NULL);
		pthread_mutex_lock(&fs->lock);
		f->next = fs->files;
		if (f->next)
			f->next->prev = f;
		fs->files = f;
		pthread_mutex_unlock(&fs->lock);
		if (flags & NODE_STREAM) {
			f->stream = stream_open(fs->hub);
		} else if (flags & NODE_LOG) {
			char *path;
			rc = node_log_path(fs->o, &n, &path);
			if (!rc) {
				f->logfd = open(path, O_RDONLY | O_CLOEXEC);
				rc = f->logfd < 0 ? -EIO : 0;
				free(path);
			}
		} else if ((flags & NODE_DOC) && acc != O_WRONLY) {
			rc = node_render_cached(fs->o, &n, &f->data);
		}
	}
	OP_END(rc);
	if (rc) {
		if (f)
			fs_file_free(fs, f, true);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)f;
	fi->direct_io = 1;
	/* Only a descriptor that can write has something for close to finish (a
	 * command in pieces): close(2) of any other is not worth a round trip. */
	fi->noflush = acc == O_RDONLY;
	if (f->stream)
		fi->nonseekable = 1;
	fs_reply_open(req, fi, flags & NODE_CTL);
}

static char *caller_cwd(fuse_req_t req)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	char link[64], target[4096];
	snprintf(link, sizeof link, "/proc/%d/cwd", (int)ctx->pid);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n <= 0)
		return NULL;
	target[n] = '\0';
	return xstrdup(target);
}

/* f->lock held: what reads on the descriptor return from now, starting at
 * file offset end (where the write left it). */
static void set_result(struct fs_file *f, struct buf *result, off_t end)
{
	buf_free(&f->data);
	f->data = *result;
	f->has_result = true;
	f->result_base = end;
}

/* f->lock held (dropped while the command runs, as it may wait for the
 * model and the disk): applies the pending command, its result (or error
 * object) to be read back from where it ended. */
static int fs_apply_pending(struct fs *fs, struct fs_file *f, fuse_req_t req)
{
	if (!f->pending_open)
		return 0;
	struct buf command = f->pending, result = BUF_INIT;
	off_t end = f->pending_off + (off_t)command.len;
	f->pending = (struct buf)BUF_INIT;
	f->pending_open = false;
	pthread_mutex_unlock(&f->lock);
	char *cwd = node_flags(&f->node) & NODE_CWD ? caller_cwd(req) : NULL;
	uint64_t before = events_seq(&fs->o->events);
	uint64_t ticket;
	int rc = node_write_journaled(fs->o, &f->node, f->path, command.data ? command.data : "",
				      command.len, cwd, &result, &ticket);
	uint64_t after = events_seq(&fs->o->events);
	free(cwd);
	buf_free(&command);
	pthread_mutex_lock(&f->lock);
	set_result(f, &result, end);
	if (ticket > f->unsynced)
		f->unsynced = ticket;
	if (after - before > FS_ANNOUNCE_AT_CLOSE)
		f->announce_seq = after;
	return rc;
}

/* A piece of a command at file offset off. A write(2) reaches us cut into
 * pieces only where the writer's buffer or the kernel's max_write cut it,
 * both multiples of 4 KiB: a piece whose size is not one ends its command,
 * which is then applied at once, so its error is the write's own. */
static int fs_write_piece(struct fs *fs, struct fs_file *f, fuse_req_t req, const char *data,
			  size_t size, off_t off)
{
	size_t limit = fs->o->cfg.max_write - 4096;
	int rc = 0;
	pthread_mutex_lock(&f->lock);
	if (f->pending_open && off != f->pending_off + (off_t)f->pending.len)
		rc = fs_apply_pending(fs, f, req);   /* a write elsewhere: a new command */
	if (!f->pending_open) {
		f->pending_open = true;
		f->pending_off = off;
	}
	if (f->oversize || f->pending.len + size > limit) {
		f->oversize = true;
		buf_reset(&f->pending);
		f->pending_open = false;
		char msg[128];
		snprintf(msg, sizeof msg, "a command through the mount is at most %zu bytes", limit);
		struct buf result = BUF_INIT;
		rc = node_write_error(fs->o, f->path, EFBIG, msg, &result);
		set_result(f, &result, off);
	} else {
		buf_append(&f->pending, data, size);
		if (size % 4096 && (rc = fs_apply_pending(fs, f, req)))
			f->result_base -= (off_t)size;   /* a failed write(2) leaves the offset where it was */
	}
	pthread_mutex_unlock(&f->lock);
	return rc;
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	OP_BEGIN(TM_READ);
	struct fs_file *f = (struct fs_file *)(uintptr_t)fi->fh;
	if (f->stream) {
		OP_END(0);
		stream_read(fs->hub, f->stream, req, size);   /* replies now or later */
		return;
	}
	f = fs_file_hold(fs, fi);
	pthread_mutex_lock(&f->lock);
	(void)fs_apply_pending(fs, f, req);   /* its result, or error object, is what is read */
	if (f->logfd >= 0 && !f->has_result) {
		pthread_mutex_unlock(&f->lock);
		char *tmp = xmalloc(size ? size : 1);
		ssize_t r = pread(f->logfd, tmp, size, off);
		OP_END(r < 0);
		if (r < 0)
			fuse_reply_err(req, EIO);
		else
			fuse_reply_buf(req, tmp, (size_t)r);
		free(tmp);
	} else {
		/* After a write, reads on the same descriptor return its result,
		 * starting where the write left the file offset. Replied from the
		 * snapshot, under its lock: a write may replace it. */
		size_t pos = (size_t)off;
		if (f->has_result)
			pos = off > f->result_base ? (size_t)(off - f->result_base) : 0;
		size_t n = pos < f->data.len ? f->data.len - pos : 0;
		OP_END(0);
		fuse_reply_buf(req, n ? f->data.data + pos : NULL, n < size ? n : size);
		pthread_mutex_unlock(&f->lock);
	}
	fs_file_put(fs, f);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *data, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	OP_BEGIN(TM_WRITE);
	struct fs_file *f = fs_file_hold(fs, fi);
	int rc;
	if (f->stream) {
		struct buf result = BUF_INIT;
		rc = stream_write(fs->hub, f->stream, data, size, &result);
		buf_free(&result);   /* an error object is in last_error, and the stream's to read */
		rc = rc < 0 ? rc : 0;
	} else {
		rc = fs_write_piece(fs, f, req, data, size, off);
	}
	fs_file_put(fs, f);
	OP_END(rc);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

/* close(2) and fsync(2): a command still pending is applied now, and its
 * error is theirs. A write(2) returns once its change is in the journal (it
 * survives kill -9); with --durable they return once it is on the disk too:
 * writers of one file at once share the store's next sync, each waiting
 * here rather than in write(2), where they would wait one by one. A large
 * change (a plan of thousands of tasks) is announced to inotify before close
 * returns: the notifier's calls on the mount would otherwise go on for a
 * moment after, and an unmount in that moment would fail with EBUSY. A
 * small one is announced within a millisecond, and costs no wait. */
static void fs_settle(fuse_req_t req, struct fuse_file_info *fi)
{
	OP_BEGIN(TM_OTHER);
	struct fs_file *f = fs_file_hold(fs, fi);
	int rc = 0;
	uint64_t announce = 0, ticket = 0;
	if (!f->stream) {
		pthread_mutex_lock(&f->lock);
		rc = fs_apply_pending(fs, f, req);
		announce = f->announce_seq;
		ticket = f->unsynced;
		f->announce_seq = f->unsynced = 0;
		pthread_mutex_unlock(&f->lock);
	}
	struct buf result = BUF_INIT;
	int synced = node_write_synced(fs->o, f->path, ticket, &result);
	if (synced) {
		pthread_mutex_lock(&f->lock);
		set_result(f, &result, f->result_base);   /* what a read of the descriptor says */
		pthread_mutex_unlock(&f->lock);
		rc = rc ? rc : synced;
	} else {
		buf_free(&result);
	}
	if (announce && !synced)
		notifier_wait(fs->notifier, announce, FS_ANNOUNCE_WAIT_MS);
	fs_file_put(fs, f);
	OP_END(rc);
	fuse_reply_err(req, -rc);
}

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	fs_settle(req, fi);
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	fs_settle(req, fi);
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	OP_BEGIN(TM_RELEASE);
	fs_file_put(fs, (struct fs_file *)(uintptr_t)fi->fh);
	OP_END(0);
	fuse_reply_err(req, 0);
}

/* mkdir, mknod, rmdir and unlink exist only for the notifier: each raises the
 * inotify event of an entry that the daemon itself created or removed. */
static void notifier_entry(fuse_req_t req, fuse_ino_t parent, const char *name,
			   enum notify_intent want)
{
	OP_BEGIN(TM_OTHER);
	enum notify_intent intent;
	const char *target;
	struct fs_inode *pin = fs_inode(fs, parent);
	char path[1024];
	int rc = !pin || path_join(pin->path, name, path, sizeof path) ? -ENOENT : 0;
	if (!rc && (!notifier_owns(fs->notifier, req, &intent, &target) || intent != want ||
		    strcmp(target, path)))
		rc = -EACCES;
	struct node n;
	struct fuse_entry_param e = {0};
	if (!rc && want == NOTIFY_CREATE) {
		rc = node_resolve(fs->o, path, &n);
		if (!rc) {
			e.ino = fs_intern(fs, path);
			rc = fs_stat(fs, e.ino, &n, &e.attr, false);
		}
	}
	OP_END(rc);
	if (rc) {
		fuse_reply_err(req, -rc);
	} else if (want == NOTIFY_CREATE) {
		fs_held(fs, e.ino);
		fuse_reply_entry(req, &e);
	} else {
		fuse_reply_err(req, 0);
	}
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	notifier_entry(req, parent, name, NOTIFY_CREATE);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	notifier_entry(req, parent, name, NOTIFY_CREATE);
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	notifier_entry(req, parent, name, NOTIFY_DELETE);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	notifier_entry(req, parent, name, NOTIFY_DELETE);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_forget_n(fs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		fs_forget_n(fs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;
	conn->max_write = (unsigned)fs->o->cfg.max_write;
	/* Reads are answered from snapshots; splicing buys nothing here. */
	conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

static const struct fuse_lowlevel_ops ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.mkdir = fs_mkdir,
	.mknod = fs_mknod,
	.rmdir = fs_rmdir,
	.unlink = fs_unlink,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.releasedir = fs_releasedir,
	.open = fs_open,
	.read = fs_read,
	.write = fs_write,
	/* close(2) and fsync(2) of a descriptor that can write settle its
	 * commands (fs_settle); a read-only open asks for no flush (noflush) */
	.flush = fs_flush,
	.fsync = fs_fsync,
	.release = fs_release,
};

const struct fuse_lowlevel_ops *fs_ops(void)
{
	return &ops;
}
