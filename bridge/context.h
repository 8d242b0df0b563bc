/* context: named prompt material for workers (README, "The namespace").
 *   echo 'src/main.c'            > context/inject   # kind file, name main.c
 *   echo 'skeleton src/main.c'   > context/inject   # ctags outline
 *   echo 'src/main.c as entry'   > context/inject
 *   echo '{"text":"be brief","name":"style"}' > context/inject
 *   cat context/aggregate; jq . context/state.json; echo style > context/remove
 * The store has its own lock and never takes the core's, so the file reads and
 * ctags runs it does are never made while the scheduler waits. */
#ifndef ORCHFS_CONTEXT_H
#define ORCHFS_CONTEXT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "events.h"

enum ctx_kind { CTX_FILE, CTX_SKELETON, CTX_TEXT };

/* One parsed inject command (cmd.c fills it from the line form or JSON). */
struct ctx_inject_req {
	enum ctx_kind kind;
	char *path;          /* CTX_FILE, CTX_SKELETON: source path (absolute after cmd parsing) */
	char *text;          /* CTX_TEXT */
	char name[65];       /* "" = derive: basename of path, "text-N" for text */
};

struct ctx_store;

/* mount: refused as a source prefix (reading our own mount from a handler
 * could deadlock). max_bytes: the biggest source accepted (EFBIG above). */
struct ctx_store *ctx_create(struct events *ev, const char *mount, size_t max_bytes);
void ctx_destroy(struct ctx_store *cs);

/* Adds or replaces entry req->name. Result: the entry as in state.json, one line.
 * Errors: EINVAL bad name/kind, ENOENT no such source, EACCES unreadable,
 * EFBIG too big, EIO ctags failed. Nothing changes on error. */
int ctx_inject(struct ctx_store *cs, const struct ctx_inject_req *req, struct buf *result,
	       struct orch_err *err);
/* ENOENT when there is no such entry. Result: {"removed":"NAME"}. */
int ctx_remove(struct ctx_store *cs, const char *name, struct buf *result, struct orch_err *err);
bool ctx_exists(struct ctx_store *cs, const char *name);
/* Calls fn for each entry name in insertion order. */
void ctx_names(struct ctx_store *cs, void (*fn)(void *arg, const char *name), void *arg);

/* context/state.json: {"entries":[{name,kind,source,bytes,sha256,mtime,
 * token_estimate,status}], "skeleton_cache":{"entries","hits","misses"},
 * "aggregate":{"entries","bytes","token_estimate"}}. status (fresh|stale|missing)
 * is found by checking each source now. */
cJSON *ctx_state_json(struct ctx_store *cs);
/* context/aggregate: "# NAME" heading per entry, then the content fenced. */
void ctx_render_aggregate(struct ctx_store *cs, struct buf *out);
/* context/files/NAME: the content as injected. -ENOENT when absent. */
int ctx_render_file(struct ctx_store *cs, const char *name, struct buf *out);

/* Persistence (bridge/store.c): entries' metadata and the skeleton cache as one
 * document; contents go separately, as they may be large and hold any byte. */
cJSON *ctx_export(struct ctx_store *cs);
size_t ctx_export_contents(struct ctx_store *cs,
			   void (*fn)(void *arg, const char *name, const char *data, size_t len),
			   void *arg);
/* Loads a document made by ctx_export into an empty store; content() hands
 * over each entry's bytes (malloc'd) and returns false when it has none. */
int ctx_import(struct ctx_store *cs, const cJSON *doc,
	       bool (*content)(void *arg, const char *name, char **data, size_t *len), void *arg);

#endif
