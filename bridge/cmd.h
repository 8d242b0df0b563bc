/* cmd: the one parser of control writes. Every control file takes a line form
 * and a JSON form; both parse into the structs below, so the mount and the
 * HTTP/WebSocket API share one grammar and one set of error messages.
 *   echo 'sleep 5' > mma/workers/spawn
 *   echo '7 KILL grace=2' > mma/workers/kill
 *   printf 'add_dep t2 t1\nhold t3\n' > mma/dag/mutate
 *   echo 'model=m1 in=1200 out=300' > mma/workers/7/usage
 * Parsers validate fully (ids, numbers, types) and return -errno with a message
 * in err; they never touch the model. Free results with the matching *_free. */
#ifndef ORCHFS_CMD_H
#define ORCHFS_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "context.h"
#include "err.h"
#include "orch.h"

/* An "env" holds at most ENV_VARS_MAX names of at most ENV_NAME_MAX bytes. */
#define ENV_VARS_MAX 1024
#define ENV_NAME_MAX 128

/* A task as given in a plan or add_task (README, "The namespace"). */
struct task_spec {
	char id[ID_MAX + 1];
	char *command;                 /* required, non-empty */
	char *title, *cwd, *model;     /* optional; NULL when absent */
	char **env;                    /* "KEY=VALUE"; from a JSON object of strings */
	size_t nenv;
	char (*deps)[ID_MAX + 1];
	size_t ndeps;
	int retries;                   /* >= 0, default 0 */
	int timeout_s;                 /* >= 0, default 0 = none */
	int priority;                  /* any int, default 0; higher starts first */
	enum runner_kind runner;       /* "runner"; RUNNER_DEFAULT when absent */
	char **slurm;                  /* "slurm": sbatch's options, as checked */
	size_t nslurm;
};

struct cmd_plan {                      /* tracks/create */
	char id[ID_MAX + 1];
	char *title;                   /* NULL when absent */
	int64_t budget_micro;          /* -1 when absent */
	struct task_spec *tasks;
	size_t ntasks;
};

struct cmd_spawn {                     /* mma/workers/spawn */
	char *command;
	char task[ID_MAX + 1];         /* "" when absent */
	char track[ID_MAX + 1];        /* "" when absent */
	char *cwd, *model;             /* NULL when absent */
	char **env;
	size_t nenv;
};

struct cmd_kill {                      /* mma/workers/kill, mma/workers/ID/kill */
	int id;                        /* 0 for the per-worker file */
	int signal;                    /* default SIGTERM */
	int grace_s;                   /* -1 = the daemon's --kill-grace */
};

enum dag_op_kind {
	DAG_ADD_TASK, DAG_REMOVE_TASK, DAG_ADD_DEP, DAG_REMOVE_DEP,
	DAG_RETRY, DAG_SKIP, DAG_HOLD, DAG_RELEASE, DAG_CANCEL,
	DAG_REMOVE_TRACK, DAG_ARCHIVE,
};

struct dag_op {
	enum dag_op_kind kind;
	char task[ID_MAX + 1];         /* every task op; add_task: spec.id */
	char dep[ID_MAX + 1];          /* add_dep, remove_dep */
	char track[ID_MAX + 1];        /* add_task, remove_track, archive */
	struct task_spec spec;         /* add_task */
};

struct cmd_mutate {
	struct dag_op *ops;
	size_t nops;
};

/* Input is the raw bytes of one write; a single trailing newline is ignored.
 * Whether it is JSON is decided by its first non-blank byte ('{' or '['). */
int cmd_parse_plan(const char *in, size_t len, struct cmd_plan *out, struct orch_err *err);
int cmd_parse_spawn(const char *in, size_t len, struct cmd_spawn *out, struct orch_err *err);
/* per_worker: the "[SIGNAL] [grace=S]" form of workers/ID/kill (no id). */
int cmd_parse_kill(const char *in, size_t len, bool per_worker, struct cmd_kill *out,
		   struct orch_err *err);
int cmd_parse_mutate(const char *in, size_t len, struct cmd_mutate *out, struct orch_err *err);
/* JSON {"model","input_tokens","output_tokens","cache_read_tokens"?,"cache_write_tokens"?}
 * or "model=NAME in=N out=N [cache_read=N] [cache_write=N]"; counts >= 0; reports = 1. */
int cmd_parse_usage(const char *in, size_t len, struct usage *out, struct orch_err *err);
/* "PATH", "skeleton PATH", "PATH as NAME", "skeleton PATH as NAME", "text TEXT…",
 * or JSON {"path"|"text","name"?,"kind"?}. A relative PATH is taken relative to
 * cwd (the writer's working directory; NULL = refuse relative paths). */
int cmd_parse_inject(const char *in, size_t len, const char *cwd, struct ctx_inject_req *out,
		     struct orch_err *err);
/* One word (a context entry name), e.g. for context/remove. */
int cmd_parse_name(const char *in, size_t len, char out[ID_MAX + 1], struct orch_err *err);
/* Whole number in [min, max] (e.g. max_workers). */
int cmd_parse_int(const char *in, size_t len, int64_t min, int64_t max, int64_t *out,
		  struct orch_err *err);
/* Non-negative decimal USD, e.g. "12.5", into micro-dollars. */
int cmd_parse_usd(const char *in, size_t len, int64_t *micro, struct orch_err *err);
/* pipeline/pause: "freeze" (or JSON {"freeze":true}) freezes, any other text
 * pauses; a NUL or bytes that are not UTF-8 are refused, as everywhere. */
int cmd_parse_pause(const char *in, size_t len, bool *freeze, struct orch_err *err);
/* Any text (pipeline/resume): only a NUL or bytes that are not UTF-8 are refused. */
int cmd_parse_text(const char *in, size_t len, struct orch_err *err);

/* "TERM", "SIGTERM", "term", "15" -> 15; -1 when unknown. */
int signal_from_name(const char *s);
const char *signal_name(int sig);      /* 15 -> "TERM" */

void task_spec_free(struct task_spec *s);
void cmd_plan_free(struct cmd_plan *p);
void cmd_spawn_free(struct cmd_spawn *s);
void cmd_mutate_free(struct cmd_mutate *m);
void ctx_inject_req_free(struct ctx_inject_req *r);

#endif
