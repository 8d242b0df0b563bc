/* context: the store behind context/ — named prompt material (a file's
 * content, a ctags outline of a source file, or text), its freshness against
 * the disk now, and the skeleton cache that spares repeated ctags runs. */
#include "context.h"
#include "json.h"
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define CTX_NAME_MAX 64
#define SKEL_CACHE_MAX 256
/* ctags prints a few hundred bytes a definition; far past this it is not
 * making an outline of a file we accepted, and the daemon must not balloon. */
#define CTAGS_OUTPUT_MAX ((size_t)64 << 20)
#define SYMLINK_MAX 40
/* Returned by resolve() for "inside the mount"; no syscall yields it there. */
#define INSIDE_MOUNT EXDEV

struct ctx_entry {
	char name[CTX_NAME_MAX + 1];
	enum ctx_kind kind;
	char *source;        /* as given; NULL for text */
	char *real;          /* source with symlinks resolved at injection; NULL for text */
	char *content;       /* what workers are fed; NULL in state snapshots */
	size_t bytes;
	char sha[65];        /* of the source content at injection (text: of the text) */
	int64_t src_size;
	int64_t mtime_ns;
};

struct skel_slot {
	char *path;          /* resolved source path: one slot per file */
	int64_t size, mtime_ns;
	char sha[65];
	char *outline;
	size_t len;
};

struct ctx_store {
	pthread_mutex_t lock;
	struct events *ev;
	char *mount;         /* resolved; NULL = nothing to refuse. Never changes. */
	size_t max_bytes;    /* never changes */

	/* Under lock: */
	struct ctx_entry *ent;   /* insertion order; a replaced entry keeps its place */
	size_t n, cap;
	uint64_t next_text;
	struct skel_slot *cache; /* least recently used first */
	size_t ncache;
	uint64_t hits, misses;
};

static const char *kind_name(enum ctx_kind k)
{
	switch (k) {
	case CTX_FILE:
		return "file";
	case CTX_SKELETON:
		return "skeleton";
	case CTX_TEXT:
		return "text";
	}
	return "?";
}

static bool valid_name(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (n == 0 || n > CTX_NAME_MAX || n == max || s[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

static int64_t mtime_ns_of(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool under_mount(const char *p, const char *mount)
{
	if (!mount)
		return false;
	size_t n = strlen(mount);
	if (n == 1)          /* mount is "/" */
		return true;
	return strncmp(p, mount, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

static char *read_link(const char *p)
{
	for (size_t cap = 256;; cap *= 2) {
		char *b = xmalloc(cap);
		ssize_t n = readlink(p, b, cap);
		if (n < 0) {
			int e = errno;
			free(b);
			errno = e;
			return NULL;
		}
		if (n == 0) {
			free(b);
			errno = ENOENT;
			return NULL;
		}
		if ((size_t)n < cap) {
			b[n] = '\0';
			return b;
		}
		free(b);
	}
}

static void buf_truncate(struct buf *b, size_t len)
{
	b->len = len;
	if (b->data)
		b->data[len] = '\0';
}

/* realpath(3) done by hand, because each prefix must be checked against the
 * mount BEFORE it is looked at: an lstat inside our own FUSE mount made from a
 * handler thread can deadlock, and realpath would already have made it.
 * touch=false only normalises the text (".", "..", "//"). Returns 0 with a
 * malloc'd absolute path, -INSIDE_MOUNT, or -errno. */
static int resolve(const char *path, const char *mount, bool touch, char **out)
{
	struct buf todo = BUF_INIT, done = BUF_INIT;
	int links = 0, rc = 0;

	if (path[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		if (!cwd)
			return -errno;
		buf_puts(&todo, cwd);
		buf_putc(&todo, '/');
		free(cwd);
	}
	buf_puts(&todo, path);

	size_t pos = 0;
	while (pos < todo.len) {
		while (pos < todo.len && todo.data[pos] == '/')
			pos++;
		if (pos == todo.len)
			break;
		size_t end = pos;
		while (end < todo.len && todo.data[end] != '/')
			end++;
		const char *comp = todo.data + pos;
		size_t clen = end - pos;
		pos = end;
		if (clen == 1 && comp[0] == '.')
			continue;
		if (clen == 2 && comp[0] == '.' && comp[1] == '.') {
			/* done never holds a symlink, so ".." is plain text here. */
			char *slash = done.len ? strrchr(done.data, '/') : NULL;
			if (slash)
				buf_truncate(&done, (size_t)(slash - done.data));
			continue;
		}
		size_t keep = done.len;
		buf_putc(&done, '/');
		buf_append(&done, comp, clen);
		if (under_mount(done.data, mount)) {
			rc = -INSIDE_MOUNT;
			break;
		}
		if (!touch)
			continue;
		struct stat st;
		if (lstat(done.data, &st) < 0) {
			rc = -errno;
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			if (++links > SYMLINK_MAX) {
				rc = -ELOOP;
				break;
			}
			char *target = read_link(done.data);
			if (!target) {
				rc = -errno;
				break;
			}
			struct buf next = BUF_INIT;
			buf_puts(&next, target);
			buf_putc(&next, '/');
			buf_append(&next, todo.data + pos, todo.len - pos);
			buf_truncate(&done, target[0] == '/' ? 0 : keep);
			free(target);
			buf_free(&todo);
			todo = next;
			pos = 0;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			size_t p = pos;
			while (p < todo.len && todo.data[p] == '/')
				p++;
			if (p < todo.len) {
				rc = -ENOTDIR;
				break;
			}
		}
	}
	buf_free(&todo);
	if (rc) {
		buf_free(&done);
		return rc;
	}
	if (done.len == 0)
		buf_putc(&done, '/');
	*out = buf_steal(&done);
	return 0;
}

/* The mount point itself is not looked at: the daemon may already serve it.
 * Its parent is resolved so a source reached through a symlinked parent
 * (/home -> /data/home) still matches. */
static char *resolve_mount(const char *mount)
{
	char *lex;
	if (!mount || !*mount || resolve(mount, NULL, false, &lex) < 0)
		return NULL;
	char *slash = strrchr(lex, '/');
	if (slash == lex)
		return lex;
	char *parent = xstrndup(lex, (size_t)(slash - lex)), *real;
	if (resolve(parent, NULL, true, &real) < 0) {
		free(parent);
		return lex;
	}
	struct buf b = BUF_INIT;
	buf_puts(&b, strcmp(real, "/") ? real : "");
	buf_puts(&b, slash);
	free(parent);
	free(real);
	free(lex);
	return buf_steal(&b);
}

static int source_error(struct orch_err *err, const char *path, int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return err_set(err, ENOENT, "no such file: %s", path);
	case EACCES:
	case EPERM:
		return err_set(err, EACCES, "cannot read %s: permission denied", path);
	case ELOOP:
		return err_set(err, EINVAL, "%s: too many levels of symbolic links", path);
	case ENAMETOOLONG:
		return err_set(err, EINVAL, "%s: file name too long", path);
	default:
		return err_set(err, EIO, "cannot read %s: %s", path, strerror(e));
	}
}

struct source {
	char *real;
	char *data;
	size_t len;
	int64_t size, mtime_ns;
	char sha[65];
};

static void source_free(struct source *s)
{
	free(s->real);
	free(s->data);
	memset(s, 0, sizeof *s);
}

/* Reads a whole source file; called without the store lock. */
static int read_source(const struct ctx_store *cs, const char *path, struct source *src,
		       struct orch_err *err)
{
	memset(src, 0, sizeof *src);
	int rc = resolve(path, cs->mount, true, &src->real);
	if (rc == -INSIDE_MOUNT)
		return err_set(err, EINVAL,
			       "%s is inside the orchfs mount %s; inject the original file instead",
			       path, cs->mount);
	if (rc < 0)
		return source_error(err, path, -rc);

	/* O_NONBLOCK: opening a FIFO must not wait for a writer before fstat refuses it. */
	int fd = open(src->real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		rc = source_error(err, path, errno);
		source_free(src);
		return rc;
	}
	struct stat st;
	struct buf data = BUF_INIT;
	if (fstat(fd, &st) < 0) {
		rc = source_error(err, path, errno);
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = err_set(err, EINVAL, "%s is a directory, not a file", path);
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(err, EINVAL, "%s is not a regular file", path);
		goto fail;
	}
	if ((uint64_t)st.st_size > cs->max_bytes) {
		rc = err_set(err, EFBIG, "%s is %" PRId64 " bytes, over the limit of %zu", path,
			     (int64_t)st.st_size, cs->max_bytes);
		goto fail;
	}
	/* Read to EOF rather than st_size: the file may grow, and /proc files say 0. */
	for (;;) {
		buf_reserve(&data, 65536);
		ssize_t n = read(fd, data.data + data.len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = source_error(err, path, errno);
			goto fail;
		}
		if (n == 0)
			break;
		data.len += (size_t)n;
		data.data[data.len] = '\0';
		if (data.len > cs->max_bytes) {
			rc = err_set(err, EFBIG, "%s grew over the limit of %zu bytes while read",
				     path, cs->max_bytes);
			goto fail;
		}
	}
	close(fd);
	src->len = data.len;
	src->data = buf_steal(&data);
	src->size = (int64_t)st.st_size;
	src->mtime_ns = mtime_ns_of(&st);
	sha256_hex(src->data, src->len, src->sha);
	return 0;
fail:
	close(fd);
	buf_free(&data);
	source_free(src);
	return rc;
}

/* Hashes the file at real now; false when it cannot be read as a regular file. */
static bool hash_file(const char *real, char out[65])
{
	int fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return false;
	}
	struct sha256_ctx c;
	uint8_t d[SHA256_DIGEST_LEN];
	char *chunk = xmalloc(65536);
	bool ok = true;
	sha256_init(&c);
	for (;;) {
		ssize_t n = read(fd, chunk, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			ok = false;
		if (n <= 0)
			break;
		sha256_update(&c, chunk, (size_t)n);
	}
	free(chunk);
	close(fd);
	sha256_final(&c, d);
	if (ok)
		sha256_digest_hex(d, out);
	return ok;
}

struct tag_line {
	int64_t line;
	size_t order;        /* ctags' own order breaks ties: output stays deterministic */
	char *text;
};

static int tag_cmp(const void *a, const void *b)
{
	const struct tag_line *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static const char *json_str(const cJSON *obj, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, key));
	return s ? s : "";
}

/* ctags JSON lines -> "# skeleton of PATH (N definitions)" and one line a tag. */
static void render_outline(const char *shown, const char *json, size_t len, struct buf *out)
{
	struct tag_line *tags = NULL;
	size_t n = 0, cap = 0;
	const char *p = json, *end = json + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;
		cJSON *o = cJSON_ParseWithLength(p, (size_t)(eol - p));
		p = nl ? nl + 1 : end;
		if (!o)
			continue;
		if (strcmp(json_str(o, "_type"), "tag") != 0) {
			cJSON_Delete(o);
			continue;
		}
		int64_t line = 0;
		json_int(cJSON_GetObjectItemCaseSensitive(o, "line"), 0, INT64_MAX, &line);
		const char *kind = json_str(o, "kind");
		const char *scope = json_str(o, "scope");
		struct buf t = BUF_INIT;
		buf_printf(&t, "%" PRId64 " %s %s%s%s%s", line, *kind ? kind : "?", scope,
			   *scope ? "::" : "", json_str(o, "name"), json_str(o, "signature"));
		cJSON_Delete(o);
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			tags = xrealloc(tags, cap * sizeof *tags);
		}
		tags[n] = (struct tag_line){line, n, buf_steal(&t)};
		n++;
	}
	if (n)
		qsort(tags, n, sizeof *tags, tag_cmp);
	buf_printf(out, "# skeleton of %s (%zu definitions)\n", shown, n);
	for (size_t i = 0; i < n; i++) {
		buf_puts(out, tags[i].text);
		buf_putc(out, '\n');
		free(tags[i].text);
	}
	free(tags);
}

/* Runs ctags on real (the resolved path, so it reads the file we read) and
 * renders the outline. Called without the store lock. */
static int run_ctags(const char *real, const char *shown, struct buf *out, struct orch_err *err)
{
	int fds[2];
	/* O_CLOEXEC: workers spawned meanwhile must not hold our pipe open. */
	if (pipe2(fds, O_CLOEXEC) < 0)
		return err_set(err, EIO, "skeleton of %s: pipe: %s", shown, strerror(errno));

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	/* The daemon may block or ignore signals (SIGPIPE); ctags should not inherit that. */
	sigset_t none, dfl;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

	char a0[] = "ctags", a1[] = "--output-format=json", a2[] = "--fields=+nS", a3[] = "-f",
	     a4[] = "-";
	char *path_arg = xstrdup(real);
	char *argv[] = {a0, a1, a2, a3, a4, path_arg, NULL};
	pid_t pid;
	int rc = posix_spawnp(&pid, "ctags", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(path_arg);
	close(fds[1]);
	if (rc != 0) {
		close(fds[0]);
		return err_set(err, EIO, "skeleton of %s: cannot run ctags (%s); install universal-ctags",
			       shown, strerror(rc));
	}

	struct buf json = BUF_INIT;
	bool too_big = false;
	for (;;) {
		buf_reserve(&json, 65536);
		ssize_t n = read(fds[0], json.data + json.len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		json.len += (size_t)n;
		json.data[json.len] = '\0';
		if (json.len > CTAGS_OUTPUT_MAX) {
			too_big = true;
			kill(pid, SIGKILL);
			break;
		}
	}
	close(fds[0]);

	/* This pid only: the daemon reaps its workers elsewhere. */
	int status = 0;
	pid_t w;
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);

	if (too_big)
		rc = err_set(err, EIO, "skeleton of %s: ctags output over %zu bytes", shown,
			     CTAGS_OUTPUT_MAX);
	else if (w < 0)
		rc = err_set(err, EIO, "skeleton of %s: waiting for ctags: %s", shown, strerror(errno));
	else if (WIFSIGNALED(status))
		rc = err_set(err, EIO, "skeleton of %s: ctags killed by signal %d", shown,
			     WTERMSIG(status));
	else if (WEXITSTATUS(status) == 127)
		rc = err_set(err, EIO, "skeleton of %s: ctags not found; install universal-ctags",
			     shown);
	else if (WEXITSTATUS(status) != 0)
		rc = err_set(err, EIO,
			     "skeleton of %s: ctags exited with status %d (universal-ctags with JSON output is required)",
			     shown, WEXITSTATUS(status));
	if (rc == 0)
		render_outline(shown, json.data ? json.data : "", json.len, out);
	buf_free(&json);
	return rc;
}

static void slot_free(struct skel_slot *s)
{
	free(s->path);
	free(s->outline);
}

/* Under lock. Moves slot i to the end (most recently used). */
static void cache_touch(struct ctx_store *cs, size_t i)
{
	struct skel_slot s = cs->cache[i];
	memmove(&cs->cache[i], &cs->cache[i + 1], (cs->ncache - i - 1) * sizeof s);
	cs->cache[cs->ncache - 1] = s;
}

/* Under lock. A hit needs all four of path, size, mtime and hash equal. */
static bool cache_lookup(struct ctx_store *cs, const struct source *src, struct buf *out)
{
	for (size_t i = 0; i < cs->ncache; i++) {
		struct skel_slot *s = &cs->cache[i];
		if (strcmp(s->path, src->real) != 0)
			continue;
		if (s->size != src->size || s->mtime_ns != src->mtime_ns || strcmp(s->sha, src->sha))
			return false;
		buf_append(out, s->outline, s->len);
		cache_touch(cs, i);
		return true;
	}
	return false;
}

/* Under lock. One slot per path: an older version of a file is not coming back
 * with the same mtime, so its outline is only dead weight. */
static void cache_store(struct ctx_store *cs, const struct source *src, const char *outline,
			size_t len)
{
	size_t i;
	for (i = 0; i < cs->ncache; i++)
		if (strcmp(cs->cache[i].path, src->real) == 0)
			break;
	if (i == cs->ncache) {
		if (cs->ncache == SKEL_CACHE_MAX) {
			slot_free(&cs->cache[0]);
			memmove(&cs->cache[0], &cs->cache[1], (cs->ncache - 1) * sizeof cs->cache[0]);
			cs->ncache--;
			i = cs->ncache;
		}
		cs->cache[i] = (struct skel_slot){.path = xstrdup(src->real)};
		cs->ncache++;
	}
	struct skel_slot *s = &cs->cache[i];
	free(s->outline);
	s->size = src->size;
	s->mtime_ns = src->mtime_ns;
	memcpy(s->sha, src->sha, sizeof s->sha);
	s->outline = xstrndup(outline, len);
	s->len = len;
	cache_touch(cs, i);
}

static void entry_free(struct ctx_entry *e)
{
	free(e->source);
	free(e->real);
	free(e->content);
}

static ssize_t find_entry(const struct ctx_store *cs, const char *name)
{
	for (size_t i = 0; i < cs->n; i++)
		if (strcmp(cs->ent[i].name, name) == 0)
			return (ssize_t)i;
	return -1;
}

static cJSON *entry_json(const struct ctx_entry *e, const char *status)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", e->name);
	cJSON_AddStringToObject(o, "kind", kind_name(e->kind));
	json_add_str_or_null(o, "source", e->source);
	json_add_i64(o, "bytes", (int64_t)e->bytes);
	cJSON_AddStringToObject(o, "sha256", e->sha);
	json_add_time(o, "mtime", e->kind == CTX_TEXT ? 0 : e->mtime_ns / 1000000);
	json_add_i64(o, "token_estimate", (int64_t)((e->bytes + 3) / 4));
	cJSON_AddStringToObject(o, "status", status);
	return o;
}

static void publish(struct ctx_store *cs, enum event_kind kind, cJSON *data)
{
	if (cs->ev)
		events_publish(cs->ev, kind, data, NULL, NULL);
	else
		cJSON_Delete(data);
}

struct ctx_store *ctx_create(struct events *ev, const char *mount, size_t max_bytes)
{
	struct ctx_store *cs = xcalloc(1, sizeof *cs);
	pthread_mutex_init(&cs->lock, NULL);
	cs->ev = ev;
	cs->mount = resolve_mount(mount);
	cs->max_bytes = max_bytes;
	cs->next_text = 1;
	cs->cache = xcalloc(SKEL_CACHE_MAX, sizeof *cs->cache);
	return cs;
}

void ctx_destroy(struct ctx_store *cs)
{
	if (!cs)
		return;
	for (size_t i = 0; i < cs->n; i++)
		entry_free(&cs->ent[i]);
	free(cs->ent);
	for (size_t i = 0; i < cs->ncache; i++)
		slot_free(&cs->cache[i]);
	free(cs->cache);
	free(cs->mount);
	pthread_mutex_destroy(&cs->lock);
	free(cs);
}

/* Fills e (all but the name) from a file or skeleton request, lock-free but
 * for the cache lookup. *hit tells the commit which counter to bump, and
 * *cacheable whether a fresh outline may be filed under src's key. */
static int load_source_entry(struct ctx_store *cs, const struct ctx_inject_req *req,
			     struct ctx_entry *e, struct source *src, bool *hit, bool *cacheable,
			     struct orch_err *err)
{
	int rc = read_source(cs, req->path, src, err);
	if (rc < 0)
		return rc;
	e->source = xstrdup(req->path);
	e->real = xstrdup(src->real);
	memcpy(e->sha, src->sha, sizeof e->sha);
	e->src_size = src->size;
	e->mtime_ns = src->mtime_ns;
	if (req->kind == CTX_FILE) {
		e->bytes = src->len;
		e->content = src->data;
		src->data = NULL;
		return 0;
	}

	struct buf outline = BUF_INIT;
	pthread_mutex_lock(&cs->lock);
	*hit = cache_lookup(cs, src, &outline);
	pthread_mutex_unlock(&cs->lock);
	if (!*hit) {
		rc = run_ctags(src->real, req->path, &outline, err);
		if (rc < 0) {
			buf_free(&outline);
			return rc;
		}
		/* If the file changed while ctags read it, the outline would be
		 * filed under the older version's key. */
		struct stat st;
		*cacheable = stat(src->real, &st) == 0 && (int64_t)st.st_size == src->size &&
			     mtime_ns_of(&st) == src->mtime_ns;
	}
	e->bytes = outline.len;
	e->content = buf_steal(&outline);
	return 0;
}

int ctx_inject(struct ctx_store *cs, const struct ctx_inject_req *req, struct buf *result,
	       struct orch_err *err)
{
	static const char name_rule[] = "1-64 of [A-Za-z0-9._-], not starting with '.'";
	struct ctx_entry e = {.kind = req->kind};
	struct source src = {0};
	bool hit = false, cacheable = false;
	int rc;

	if (req->kind != CTX_FILE && req->kind != CTX_SKELETON && req->kind != CTX_TEXT)
		return err_set(err, EINVAL, "unknown context kind %d", (int)req->kind);
	if (req->name[0]) {
		if (!valid_name(req->name, sizeof req->name))
			return err_set(err, EINVAL, "bad context name \"%.64s\": use %s", req->name,
				       name_rule);
		strcpy(e.name, req->name);
	}

	if (req->kind == CTX_TEXT) {
		if (!req->text)
			return err_set(err, EINVAL, "a text entry needs \"text\"");
		size_t len = strlen(req->text);
		if (len > cs->max_bytes)
			return err_set(err, EFBIG, "text is %zu bytes, over the limit of %zu", len,
				       cs->max_bytes);
		e.content = xstrdup(req->text);
		e.bytes = len;
		sha256_hex(e.content, len, e.sha);
	} else {
		if (!req->path || !req->path[0])
			return err_set(err, EINVAL, "a %s entry needs a path", kind_name(req->kind));
		if (!e.name[0]) {
			const char *base = strrchr(req->path, '/');
			base = base ? base + 1 : req->path;
			if (!valid_name(base, CTX_NAME_MAX + 2))
				return err_set(err, EINVAL,
					       "cannot derive a context name from \"%s\" (names are %s); "
					       "give one: \"PATH as NAME\"",
					       req->path, name_rule);
			strcpy(e.name, base);
		}
		rc = load_source_entry(cs, req, &e, &src, &hit, &cacheable, err);
		if (rc < 0) {
			entry_free(&e);
			source_free(&src);
			return rc;
		}
	}

	pthread_mutex_lock(&cs->lock);
	if (!e.name[0]) {
		do
			snprintf(e.name, sizeof e.name, "text-%" PRIu64, cs->next_text++);
		while (find_entry(cs, e.name) >= 0);
	}
	if (req->kind == CTX_SKELETON) {
		if (hit) {
			cs->hits++;
		} else {
			cs->misses++;
			if (cacheable)
				cache_store(cs, &src, e.content, e.bytes);
		}
	}
	ssize_t at = find_entry(cs, e.name);
	enum event_kind kind = at >= 0 ? EVK_CONTEXT_REPLACED : EVK_CONTEXT_INJECTED;
	if (at >= 0) {
		entry_free(&cs->ent[at]);
		cs->ent[at] = e;
	} else {
		if (cs->n == cs->cap) {
			cs->cap = cs->cap ? cs->cap * 2 : 16;
			cs->ent = xrealloc(cs->ent, cs->cap * sizeof *cs->ent);
		}
		cs->ent[cs->n++] = e;
	}
	cJSON *res = entry_json(&e, "fresh");
	cJSON *data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "name", e.name);
	cJSON_AddStringToObject(data, "kind", kind_name(e.kind));
	json_add_str_or_null(data, "source", e.source);
	json_add_i64(data, "bytes", (int64_t)e.bytes);
	cJSON_AddStringToObject(data, "sha256", e.sha);
	/* Published under our lock so events come in the order changes were applied. */
	publish(cs, kind, data);
	pthread_mutex_unlock(&cs->lock);

	source_free(&src);
	json_emit(res, result);
	return 0;
}

int ctx_remove(struct ctx_store *cs, const char *name, struct buf *result, struct orch_err *err)
{
	pthread_mutex_lock(&cs->lock);
	ssize_t at = find_entry(cs, name);
	if (at < 0) {
		pthread_mutex_unlock(&cs->lock);
		return err_set(err, ENOENT, "no context entry \"%.64s\"", name);
	}
	entry_free(&cs->ent[at]);
	memmove(&cs->ent[at], &cs->ent[at + 1], (cs->n - (size_t)at - 1) * sizeof cs->ent[0]);
	cs->n--;
	cJSON *data = cJSON_CreateObject();
	cJSON_AddStringToObject(data, "name", name);
	publish(cs, EVK_CONTEXT_REMOVED, data);
	pthread_mutex_unlock(&cs->lock);

	cJSON *res = cJSON_CreateObject();
	cJSON_AddStringToObject(res, "removed", name);
	json_emit(res, result);
	return 0;
}

bool ctx_exists(struct ctx_store *cs, const char *name)
{
	pthread_mutex_lock(&cs->lock);
	bool found = find_entry(cs, name) >= 0;
	pthread_mutex_unlock(&cs->lock);
	return found;
}

void ctx_names(struct ctx_store *cs, void (*fn)(void *arg, const char *name), void *arg)
{
	/* fn runs unlocked (on a copy) so it may call back into the store. */
	pthread_mutex_lock(&cs->lock);
	size_t n = cs->n;
	char (*names)[CTX_NAME_MAX + 1] = xmalloc((n ? n : 1) * sizeof *names);
	for (size_t i = 0; i < n; i++)
		memcpy(names[i], cs->ent[i].name, sizeof names[i]);
	pthread_mutex_unlock(&cs->lock);
	for (size_t i = 0; i < n; i++)
		fn(arg, names[i]);
	free(names);
}

/* fresh | stale | missing for the source as it is now. Called without the lock. */
static const char *entry_status(const struct ctx_store *cs, const struct ctx_entry *e)
{
	if (e->kind == CTX_TEXT)
		return "fresh";
	/* Resolve the given path again: a symlink that now points elsewhere
	 * names another file, and one that now points into the mount must not
	 * be followed. */
	char *real;
	int rc = resolve(e->source[0] == '/' ? e->source : e->real, cs->mount, true, &real);
	if (rc == -ENOENT || rc == -ENOTDIR)
		return "missing";
	if (rc < 0)
		return "stale";
	struct stat st;
	const char *status;
	if (stat(real, &st) < 0)
		status = errno == ENOENT ? "missing" : "stale";
	else if (!S_ISREG(st.st_mode))
		status = "missing";
	else if ((int64_t)st.st_size == e->src_size && mtime_ns_of(&st) == e->mtime_ns)
		status = "fresh";
	else if ((int64_t)st.st_size != e->src_size)
		status = "stale";    /* another size cannot hash the same: skip the read */
	else {
		char sha[65];
		status = hash_file(real, sha) && strcmp(sha, e->sha) == 0 ? "fresh" : "stale";
	}
	free(real);
	return status;
}

cJSON *ctx_state_json(struct ctx_store *cs)
{
	pthread_mutex_lock(&cs->lock);
	size_t n = cs->n;
	struct ctx_entry *snap = xcalloc(n ? n : 1, sizeof *snap);
	for (size_t i = 0; i < n; i++) {
		snap[i] = cs->ent[i];
		snap[i].content = NULL;
		snap[i].source = cs->ent[i].source ? xstrdup(cs->ent[i].source) : NULL;
		snap[i].real = cs->ent[i].real ? xstrdup(cs->ent[i].real) : NULL;
	}
	size_t ncache = cs->ncache;
	uint64_t hits = cs->hits, misses = cs->misses;
	pthread_mutex_unlock(&cs->lock);

	cJSON *root = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(root, "entries");
	uint64_t bytes = 0, tokens = 0;
	for (size_t i = 0; i < n; i++) {
		cJSON_AddItemToArray(arr, entry_json(&snap[i], entry_status(cs, &snap[i])));
		bytes += snap[i].bytes;
		tokens += (snap[i].bytes + 3) / 4;
		entry_free(&snap[i]);
	}
	free(snap);
	cJSON *sc = cJSON_AddObjectToObject(root, "skeleton_cache");
	json_add_i64(sc, "entries", (int64_t)ncache);
	json_add_i64(sc, "hits", (int64_t)hits);
	json_add_i64(sc, "misses", (int64_t)misses);
	cJSON *agg = cJSON_AddObjectToObject(root, "aggregate");
	json_add_i64(agg, "entries", (int64_t)n);
	json_add_i64(agg, "bytes", (int64_t)bytes);
	json_add_i64(agg, "token_estimate", (int64_t)tokens);
	return root;
}

/* CommonMark closes a fence on a run of backticks at least as long as the
 * opening one, so the fence must outrun the longest run in the content. */
static size_t fence_len(const char *s, size_t len)
{
	size_t best = 0, run = 0;
	for (size_t i = 0; i < len; i++) {
		run = s[i] == '`' ? run + 1 : 0;
		if (run > best)
			best = run;
	}
	return best >= 3 ? best + 1 : 3;
}

static void put_fence(struct buf *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf_putc(out, '`');
	buf_putc(out, '\n');
}

void ctx_render_aggregate(struct ctx_store *cs, struct buf *out)
{
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < cs->n; i++) {
		const struct ctx_entry *e = &cs->ent[i];
		buf_printf(out, "# %s (%s, %s)\n\n", e->name, kind_name(e->kind),
			   e->source ? e->source : "text");
		size_t f = fence_len(e->content, e->bytes);
		put_fence(out, f);
		buf_append(out, e->content, e->bytes);
		if (e->bytes && e->content[e->bytes - 1] != '\n')
			buf_putc(out, '\n');
		put_fence(out, f);
		buf_putc(out, '\n');
	}
	pthread_mutex_unlock(&cs->lock);
}

int ctx_render_file(struct ctx_store *cs, const char *name, struct buf *out)
{
	pthread_mutex_lock(&cs->lock);
	ssize_t at = find_entry(cs, name);
	if (at >= 0)
		buf_append(out, cs->ent[at].content, cs->ent[at].bytes);
	pthread_mutex_unlock(&cs->lock);
	return at >= 0 ? 0 : -ENOENT;
}

/* --- persistence: the whole store as one document, for bridge/store.c --- */

cJSON *ctx_export(struct ctx_store *cs)
{
	cJSON *doc = cJSON_CreateObject();
	pthread_mutex_lock(&cs->lock);
	json_add_i64(doc, "next_text", (int64_t)cs->next_text);
	json_add_i64(doc, "hits", (int64_t)cs->hits);
	json_add_i64(doc, "misses", (int64_t)cs->misses);
	cJSON *entries = cJSON_AddArrayToObject(doc, "entries");
	for (size_t i = 0; i < cs->n; i++) {
		const struct ctx_entry *e = &cs->ent[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", e->name);
		cJSON_AddNumberToObject(o, "kind", e->kind);
		json_add_str_or_null(o, "source", e->source);
		json_add_str_or_null(o, "real", e->real);
		json_add_i64(o, "bytes", (int64_t)e->bytes);
		cJSON_AddStringToObject(o, "sha", e->sha);
		json_add_i64(o, "src_size", e->src_size);
		json_add_i64(o, "mtime_ns", e->mtime_ns);
		cJSON_AddItemToArray(entries, o);
	}
	cJSON *cache = cJSON_AddArrayToObject(doc, "cache");
	for (size_t i = 0; i < cs->ncache; i++) {
		const struct skel_slot *s = &cs->cache[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "path", s->path);
		json_add_i64(o, "size", s->size);
		json_add_i64(o, "mtime_ns", s->mtime_ns);
		cJSON_AddStringToObject(o, "sha", s->sha);
		cJSON_AddItemToObject(o, "outline", cJSON_CreateString(s->outline));
		cJSON_AddItemToArray(cache, o);
	}
	pthread_mutex_unlock(&cs->lock);
	return doc;
}

size_t ctx_export_contents(struct ctx_store *cs, void (*fn)(void *arg, const char *name,
							     const char *data, size_t len),
			   void *arg)
{
	pthread_mutex_lock(&cs->lock);
	for (size_t i = 0; i < cs->n; i++)
		fn(arg, cs->ent[i].name, cs->ent[i].content, cs->ent[i].bytes);
	size_t n = cs->n;
	pthread_mutex_unlock(&cs->lock);
	return n;
}

static const char *str_or_null(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int64_t get_i64(const cJSON *o, const char *key)
{
	int64_t v = 0;
	return json_int(cJSON_GetObjectItemCaseSensitive(o, key), INT64_MIN / 2, INT64_MAX / 2, &v)
		       ? v : 0;
}

int ctx_import(struct ctx_store *cs, const cJSON *doc,
	       bool (*content)(void *arg, const char *name, char **data, size_t *len), void *arg)
{
	pthread_mutex_lock(&cs->lock);
	cs->next_text = (uint64_t)get_i64(doc, "next_text");
	if (!cs->next_text)
		cs->next_text = 1;
	cs->hits = (uint64_t)get_i64(doc, "hits");
	cs->misses = (uint64_t)get_i64(doc, "misses");
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(doc, "entries")) {
		const char *name = str_or_null(o, "name");
		const char *sha = str_or_null(o, "sha");
		int64_t kind = get_i64(o, "kind");
		if (!name || !valid_name(name, CTX_NAME_MAX + 1) || !sha || strlen(sha) != 64 ||
		    kind < CTX_FILE || kind > CTX_TEXT)
			continue;   /* a damaged row is dropped, not fatal: the rest is still good */
		char *data = NULL;
		size_t len = 0;
		if (!content(arg, name, &data, &len))
			continue;
		if (cs->n == cs->cap) {
			cs->cap = cs->cap ? cs->cap * 2 : 16;
			cs->ent = xrealloc(cs->ent, cs->cap * sizeof *cs->ent);
		}
		struct ctx_entry *e = &cs->ent[cs->n++];
		memset(e, 0, sizeof *e);
		strcpy(e->name, name);
		e->kind = (enum ctx_kind)kind;
		const char *source = str_or_null(o, "source"), *real = str_or_null(o, "real");
		e->source = source ? xstrdup(source) : NULL;
		e->real = real ? xstrdup(real) : NULL;
		e->content = data;
		e->bytes = len;
		memcpy(e->sha, sha, sizeof e->sha);
		e->src_size = get_i64(o, "src_size");
		e->mtime_ns = get_i64(o, "mtime_ns");
	}
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(doc, "cache")) {
		const char *path = str_or_null(o, "path"), *sha = str_or_null(o, "sha");
		const char *outline = str_or_null(o, "outline");
		if (!path || !sha || strlen(sha) != 64 || !outline || cs->ncache == SKEL_CACHE_MAX)
			continue;
		struct skel_slot *s = &cs->cache[cs->ncache++];
		s->path = xstrdup(path);
		s->size = get_i64(o, "size");
		s->mtime_ns = get_i64(o, "mtime_ns");
		memcpy(s->sha, sha, sizeof s->sha);
		s->len = strlen(outline);
		s->outline = xstrndup(outline, s->len);
	}
	pthread_mutex_unlock(&cs->lock);
	return 0;
}
