/* nodes: the one table of the namespace (README, "The namespace"). A path resolves to a
 * node; a node renders (read) and applies writes (control files). The FUSE
 * front end and the HTTP/WebSocket API only translate their transport into
 * these calls, so both give the same bytes and the same errors.
 *   node_resolve(o, "mma/workers/3/status", &n); node_render(o, &n, &buf);
 * Paths are relative to the mount's root, without a leading slash ("" = root).
 * These functions take orch.lock themselves: call them with it released. */
#ifndef ORCHFS_NODES_H
#define ORCHFS_NODES_H

#include <sys/types.h>

#include "orch.h"

enum node_type { NODE_DIR, NODE_FILE, NODE_LINK };

enum node_flags {
	NODE_DOC = 1,       /* rendered when opened: a snapshot */
	NODE_CTL = 2,       /* a write is a command */
	NODE_LOG = 4,       /* content is a file on disk (true size, grows) */
	NODE_VOLATILE = 8,  /* changes without an event: never cached, size 0 */
	NODE_STREAM = 16,   /* the events file: answered by fs/stream, not rendered */
	NODE_JSON = 32,     /* its content is one JSON document (application/json) */
	NODE_CWD = 64,      /* a write names paths relative to the writer's directory */
};

struct node_def;

struct node {
	const struct node_def *def;
	char arg[ID_MAX + 1];   /* the value of the path's one wildcard segment, if any */
};

int node_resolve(struct orch *o, const char *path, struct node *out);

/* What a change touches, from the table alone (no lock, no render): the
 * notifier announces exactly these paths. kinds: bits 1 << enum event_kind,
 * or NODE_DEP_ERROR for a write that failed (last_error). */
#define NODE_DEP_ERROR (UINT64_C(1) << 63)
struct node_change {
	uint64_t kinds;
	int worker;                    /* the objects it names; 0 / NULL: none */
	const char *task, *track, *name;
};
/* The change an event record is (kinds 0 for one read back from the store). */
struct node_change node_change_of(const struct event_rec *rec);
enum node_touch { NODE_BORN, NODE_MODIFIED, NODE_GONE };
/* Calls fn for each path c touches: an entry born (made), a file whose bytes
 * may differ, an entry gone; dir says whether the path is a directory. */
void node_touched(const struct node_change *c,
		  void (*fn)(void *arg, enum node_touch how, const char *path, bool dir), void *arg);
/* The API's names for a path: P itself when it is a file, else P.json (so
 * /api/state and /api/mma/workers are documents), else P/info.json (one worker,
 * task or track), else the directory P. "gui/state" is another name of state.json.
 * The name used goes to resolved. */
int node_resolve_api(struct orch *o, const char *path, struct node *out, char *resolved,
		     size_t size);
/* A directory as JSON: {"path","entries":[{"name","type"}]}. */
int node_render_listing(struct orch *o, const struct node *dir, const char *path, struct buf *out);
enum node_type node_type(const struct node *n);
unsigned node_flags(const struct node *n);
mode_t node_mode(const struct node *n);     /* permission bits and S_IF* type */
/* Renders a document (NODE_DOC). -ENOENT if the object went away meanwhile. */
int node_render(struct orch *o, const struct node *n, struct buf *out);
/* The same, reusing the last render while none of the kinds of change the
 * document depends on (the node table says which) has happened since;
 * volatile documents are always rendered. Both transports read through it,
 * so a burst of reads costs one render. */
int node_render_cached(struct orch *o, const struct node *n, struct buf *out);
/* A render as the cache holds it, shared by its readers: never changed once
 * made, freed by the last one to let it go. */
struct node_body {
	int refs;            /* atomic */
	size_t len;
	char data[];         /* NUL-terminated */
};
/* node_render_cached without the copy: a reference to the render (a
 * volatile document's is its own); node_body_put lets it go. */
int node_render_shared(struct orch *o, const struct node *n, struct node_body **out);
void node_body_put(struct node_body *b);
void node_cache_init(struct orch *o);
void node_cache_free(struct orch *o);
/* Applies one write. On success result holds the result line; on failure it
 * holds the error object, last_error is updated, and -errno is returned. cwd is
 * the writer's working directory for relative paths (NULL: none known). */
int node_write(struct orch *o, const struct node *n, const char *path, const char *data,
	       size_t len, const char *cwd, struct buf *result);
/* The same, returning once the change is in the journal (it survives
 * kill -9) with its commit's ticket: with --durable, node_write_synced then
 * waits for the disk (a write through the mount, at close). */
int node_write_journaled(struct orch *o, const struct node *n, const char *path, const char *data,
			 size_t len, const char *cwd, struct buf *result, uint64_t *ticket);
/* Until a journaled write's commit is on the disk: 0, or EIO with the error
 * object in result and last_error (the change stays applied). */
int node_write_synced(struct orch *o, const char *path, uint64_t ticket, struct buf *result);
/* Fails a write that never reached a handler (too big, refused by the
 * transport): renders the error object into result and updates last_error. */
int node_write_error(struct orch *o, const char *path, int errnum, const char *message,
		     struct buf *result);
/* The same with the status a transport chose (405 for a POST to a document). */
int node_write_error_status(struct orch *o, const char *path, int errnum, int status,
			    const char *message, struct buf *result);
/* Calls fn for each entry of a directory node, in a stable order. */
int node_list(struct orch *o, const struct node *dir,
	      void (*fn)(void *arg, const char *name, const struct node *child), void *arg);
int node_readlink(struct orch *o, const struct node *n, struct buf *out);
/* The file behind a NODE_LOG node (malloc'd). */
int node_log_path(struct orch *o, const struct node *n, char **path);

#endif
