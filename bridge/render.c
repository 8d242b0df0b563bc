/* render: JSON and DOT views of tracks, tasks, workers, pipeline and money;
 * the big documents from chunks of cached fragments (see render.h). */
#include "render.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "pricing.h"

/* --- small views --- */

static void usage_fields(struct buf *b, const struct usage *u, int64_t cost)
{
	jw_lit(b, "\"input_tokens\":");
	jw_i64(b, u->input);
	jw_lit(b, ",\"output_tokens\":");
	jw_i64(b, u->output);
	jw_lit(b, ",\"cache_read_tokens\":");
	jw_i64(b, u->cache_read);
	jw_lit(b, ",\"cache_write_tokens\":");
	jw_i64(b, u->cache_write);
	jw_lit(b, ",\"reports\":");
	jw_i64(b, u->reports);
	jw_lit(b, ",\"cost_usd\":");
	jw_usd(b, cost);
}

/* The fields of a usage object, without its braces (financial.json adds to them). */
static void usage_body(const struct orch *o, const struct usage_set *set, struct buf *b)
{
	struct usage total = usage_total(set);
	usage_fields(b, &total, usage_set_cost(set, o->prices, o->nprices));
	jw_lit(b, ",\"models\":{");
	for (size_t i = 0; i < set->n; i++) {
		const struct price *p = pricing_find(o->prices, o->nprices, set->v[i].model);
		if (i)
			buf_putc(b, ',');
		jw_str(b, set->v[i].model);
		jw_lit(b, ":{");
		usage_fields(b, &set->v[i], pricing_cost(p, &set->v[i]));
		jw_lit(b, ",\"priced\":");
		jw_bool(b, p != NULL);
		buf_putc(b, '}');
	}
	buf_putc(b, '}');
}

void render_usage(const struct orch *o, const struct usage_set *set, struct buf *b)
{
	buf_putc(b, '{');
	usage_body(o, set, b);
	buf_putc(b, '}');
}

const char *worker_status_shown(const struct orch *o, const struct worker *w)
{
	struct runner *r = orch_runner(o, w->runner);
	if (w->status == WORKER_RUNNING && w->job && r->ops->queued(r, w->job))
		return "pending";
	return worker_status_name(w->status);
}

void render_worker(const struct orch *o, const struct worker *w, struct buf *b)
{
	jw_lit(b, "{\"id\":");
	jw_i64(b, w->id);
	jw_lit(b, ",\"status\":");
	jw_str(b, worker_status_shown(o, w));
	jw_lit(b, ",\"task\":");
	jw_str_or_null(b, w->task_id);
	jw_lit(b, ",\"track\":");
	jw_str_or_null(b, w->track_id);
	jw_lit(b, ",\"pid\":");
	jw_i64(b, w->pid);
	jw_lit(b, ",\"command\":");
	jw_str(b, w->command);
	jw_lit(b, ",\"cwd\":");
	jw_str(b, w->cwd);
	jw_lit(b, ",\"model\":");
	jw_str_or_null(b, w->model);
	jw_lit(b, ",\"started_at\":");
	jw_time(b, w->started_ms);
	jw_lit(b, ",\"ended_at\":");
	jw_time(b, w->ended_ms);
	/* Only once ended: a running clock would make every render differ. */
	jw_lit(b, ",\"runtime_s\":");
	if (w->ended_ms)
		jw_double(b, (double)(w->ended_ms - w->started_ms) / 1000.0);
	else
		jw_lit(b, "null");
	jw_lit(b, ",\"exit_code\":");
	jw_i64_or_null(b, w->exit_code);
	jw_lit(b, ",\"signal\":");
	jw_str_or_null(b, w->term_signal ? signal_name(w->term_signal) : NULL);
	jw_lit(b, ",\"timed_out\":");
	jw_bool(b, w->timed_out);
	jw_lit(b, ",\"timeout_s\":");
	jw_i64(b, w->timeout_s);
	/* all its processes' CPU time, once ended (its cgroup's cpu.stat while it runs) */
	jw_lit(b, ",\"cpu_s\":");
	if (w->cpu_us >= 0)
		jw_double(b, (double)w->cpu_us / 1e6);
	else
		jw_lit(b, "null");
	/* where the memory controller is delegated to orchfs's cgroup */
	jw_lit(b, ",\"memory_peak_bytes\":");
	jw_i64_or_null(b, w->memory_peak);
	struct runner *r = orch_runner(o, w->runner);
	jw_lit(b, ",\"runner\":");
	jw_str(b, r->ops->name);
	r->ops->describe(r, w->job, w->runner_ref, b);
	jw_lit(b, ",\"log\":");
	jw_str(b, w->log_path);
	jw_lit(b, ",\"usage\":");
	render_usage(o, &w->usage, b);
	buf_putc(b, '}');
}

/* {"id","track","title","status" of a task: its info.json and its dag.json node */
static void task_head(struct buf *b, const struct task *t)
{
	jw_lit(b, "{\"id\":");
	jw_str(b, t->id);
	jw_lit(b, ",\"track\":");
	jw_str(b, t->track->id);
	jw_lit(b, ",\"title\":");
	jw_str(b, task_title(t));
	jw_lit(b, ",\"status\":");
	jw_str(b, task_status_name(t->status));
}

/* For a message: "$" and the number as the documents write it. */
static void usd_text(struct buf *b, int64_t micro)
{
	buf_putc(b, '$');
	jw_usd(b, micro);
}

/* Why a task that is not running, nor over, does not start: its "waiting"
 * ({"reason","message",...}, or null). Only what the model knows exactly,
 * so it is never a guess: the first of held, deps, budget, paused,
 * max_workers that holds. */
static void task_waiting(struct orch *o, const struct task *t, struct buf *b)
{
	struct buf msg = BUF_INIT;
	const char *reason = NULL;
	const struct track *k = t->track;
	int64_t spent = 0;
	jw_lit(b, ",\"waiting\":");
	if (t->status == TASK_HELD) {
		reason = "held";
		buf_printf(&msg, "task %s is held; release it to let it run", t->id);
	} else if (t->status == TASK_BLOCKED) {
		reason = "deps";
		buf_puts(&msg, "waiting for ");
		size_t n = 0;
		for (size_t i = 0; i < t->ndeps; i++)
			if (!task_dep_satisfied(t->deps[i]))
				buf_printf(&msg, "%s%s (%s)", n++ ? ", " : "", t->deps[i]->id,
					   task_status_name(t->deps[i]->status));
	} else if (t->status == TASK_READY && k->status == TRACK_OVER_BUDGET) {
		reason = "budget";
		spent = usage_set_cost(&k->usage, o->prices, o->nprices);
		buf_printf(&msg, "track %s spent ", k->id);
		usd_text(&msg, spent);
		buf_puts(&msg, " of its ");
		usd_text(&msg, k->budget_micro);
		buf_printf(&msg, " budget; raise mma/tracks/%s/budget to go on", k->id);
	} else if (t->status == TASK_READY && o->pipeline != PIPE_RUNNING) {
		reason = "paused";
		buf_printf(&msg, "the pipeline is %s; write mma/pipeline/resume to go on",
			   pipeline_status_name(o->pipeline));
	} else if (t->status == TASK_READY && o->running >= o->max_workers) {
		reason = "max_workers";
		buf_printf(&msg, "%d workers run, max_workers is %d", o->running, o->max_workers);
	}
	if (!reason) {
		jw_lit(b, "null");
		buf_free(&msg);
		return;
	}
	jw_lit(b, "{\"reason\":");
	jw_str(b, reason);
	jw_lit(b, ",\"message\":");
	jw_str(b, msg.data);
	if (t->status == TASK_BLOCKED) {
		jw_lit(b, ",\"tasks\":[");
		size_t n = 0;
		for (size_t i = 0; i < t->ndeps; i++)
			if (!task_dep_satisfied(t->deps[i])) {
				if (n++)
					buf_putc(b, ',');
				jw_str(b, t->deps[i]->id);
			}
		buf_putc(b, ']');
	} else if (!strcmp(reason, "budget")) {
		jw_lit(b, ",\"spent_usd\":");
		jw_usd(b, spent);
		jw_lit(b, ",\"budget_usd\":");
		jw_usd(b, k->budget_micro);
	}
	buf_putc(b, '}');
	buf_free(&msg);
}

void render_task(struct orch *o, const struct task *t, unsigned with, struct buf *b)
{
	bool with_workers = with & TASK_WITH_WORKERS;
	task_head(b, t);
	jw_lit(b, ",\"command\":");
	jw_str(b, t->command);
	jw_lit(b, ",\"deps\":[");
	for (size_t i = 0; i < t->ndeps; i++) {
		if (i)
			buf_putc(b, ',');
		jw_str(b, t->deps[i]->id);
	}
	jw_lit(b, "],\"cwd\":");
	jw_str_or_null(b, t->cwd);
	jw_lit(b, ",\"env\":{");
	for (size_t i = 0; i < t->nenv; i++) {
		const char *eq = strchr(t->env[i], '=');
		if (i)
			buf_putc(b, ',');
		jw_strn(b, t->env[i], (size_t)(eq - t->env[i]));
		buf_putc(b, ':');
		jw_str(b, eq + 1);
	}
	jw_lit(b, "},\"retries\":");
	jw_i64(b, t->retries_initial);
	jw_lit(b, ",\"retries_left\":");
	jw_i64(b, t->retries);
	jw_lit(b, ",\"timeout_s\":");
	jw_i64(b, t->timeout_s);
	jw_lit(b, ",\"model\":");
	jw_str_or_null(b, t->model);
	jw_lit(b, ",\"priority\":");
	jw_i64(b, t->priority);
	jw_lit(b, ",\"runner\":");
	jw_str_or_null(b, runner_kind_name(t->runner));
	jw_lit(b, ",\"slurm\":");
	if (t->nslurm)
		jw_strv(b, t->slurm, t->nslurm);
	else
		jw_lit(b, "null");
	jw_lit(b, ",\"created_at\":");
	jw_time(b, t->created_ms);
	jw_lit(b, ",\"worker\":");
	if (t->nworkers)
		jw_i64(b, t->workers[t->nworkers - 1]);
	else
		jw_lit(b, "null");
	jw_lit(b, ",\"workers\":[");
	struct usage_set usage = {0};
	for (size_t i = 0; i < t->nworkers; i++) {
		if (i)
			buf_putc(b, ',');
		if (!with_workers) {
			jw_i64(b, t->workers[i]);
			continue;
		}
		struct worker *w = worker_find(o, t->workers[i]);
		render_worker(o, w, b);
		usage_merge(&usage, &w->usage);
	}
	buf_putc(b, ']');
	if (with_workers) {
		jw_lit(b, ",\"usage\":");
		render_usage(o, &usage, b);
	}
	if (with & TASK_WITH_WAITING)
		task_waiting(o, t, b);
	usage_set_free(&usage);
	buf_putc(b, '}');
}

static void status_counts(struct buf *b, const size_t *counts, size_t total)
{
	jw_lit(b, "\"tasks_by_status\":{");
	for (int s = 0; s <= TASK_HELD; s++) {
		if (s)
			buf_putc(b, ',');
		jw_str(b, task_status_name((enum task_status)s));
		buf_putc(b, ':');
		jw_i64(b, (int64_t)counts[s]);
	}
	jw_lit(b, "},\"task_count\":");
	jw_i64(b, (int64_t)total);
}

static void budget_field(struct buf *b, int64_t budget_micro)
{
	jw_lit(b, "\"budget_usd\":");
	if (budget_micro >= 0)
		jw_usd(b, budget_micro);
	else
		jw_lit(b, "null");
}

/* What a track and an archived one both say first: id to created_at. */
static void track_head(struct buf *b, const char *id, const char *title, enum track_status status,
		       int64_t budget_micro, int64_t cost_micro, int64_t created_ms)
{
	jw_lit(b, "{\"id\":");
	jw_str(b, id);
	jw_lit(b, ",\"title\":");
	jw_str(b, title);
	jw_lit(b, ",\"status\":");
	jw_str(b, track_status_name(status));
	buf_putc(b, ',');
	budget_field(b, budget_micro);
	jw_lit(b, ",\"cost_usd\":");
	jw_usd(b, cost_micro);
	jw_lit(b, ",\"created_at\":");
	jw_time(b, created_ms);
}

void render_track(struct orch *o, const struct track *k, bool with_tasks, struct buf *b)
{
	track_head(b, k->id, k->title, k->status, k->budget_micro,
		   usage_set_cost(&k->usage, o->prices, o->nprices), k->created_ms);
	buf_putc(b, ',');
	status_counts(b, k->counts, k->ntasks);
	if (with_tasks) {
		jw_lit(b, ",\"tasks\":[");
		for (struct task *t = k->first; t; t = t->tnext) {
			render_task(o, t, TASK_WITH_WAITING, b);
			if (t->tnext)
				buf_putc(b, ',');
		}
		jw_lit(b, "],\"usage\":");
		render_usage(o, &k->usage, b);
	}
	buf_putc(b, '}');
}

void render_archive(const struct orch *o, struct buf *b)
{
	jw_lit(b, "{\"tracks\":[");
	for (size_t i = 0; i < o->narchive; i++) {
		const struct archived_track *a = o->archive[i];
		if (i)
			buf_putc(b, ',');
		track_head(b, a->id, a->title, a->status, a->budget_micro, a->cost_micro, a->created_ms);
		jw_lit(b, ",\"archived_at\":");
		jw_time(b, a->archived_ms);
		buf_putc(b, ',');
		status_counts(b, a->counts, a->ntasks);   /* as tracks.json has them */
		buf_putc(b, '}');
	}
	jw_lit(b, "]}");
}

void render_pipeline(const struct orch *o, struct buf *b)
{
	jw_lit(b, "{\"status\":");
	jw_str(b, pipeline_status_name(o->pipeline));
	jw_lit(b, ",\"max_workers\":");
	jw_i64(b, o->max_workers);
	jw_lit(b, ",\"running\":");
	jw_i64(b, o->running);
	jw_lit(b, ",\"isolation\":");
	jw_str(b, runner_isolation(o->runner));
	buf_putc(b, ',');
	status_counts(b, o->counts, o->ntasks);
	buf_putc(b, '}');
}

static const char *status_colour(enum task_status s)
{
	static const char *const colours[] = {"lightgrey", "lightblue", "gold", "palegreen",
					      "salmon", "orchid", "white", "wheat"};
	return colours[s];
}

static void dot_quote(struct buf *out, const char *s)
{
	buf_putc(out, '"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			buf_putc(out, '\\');
		if (*s == '\n') {
			buf_puts(out, "\\n");
			continue;
		}
		buf_putc(out, *s);
	}
	buf_putc(out, '"');
}

void render_dag_dot(struct orch *o, struct buf *out)
{
	buf_puts(out, "digraph orchfs {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\"];\n");
	struct buf s = BUF_INIT;
	for (struct track *k = o->tracks; k; k = k->next) {
		buf_reset(&s);
		buf_printf(&s, "cluster_%s", k->id);
		buf_puts(out, "  subgraph ");
		dot_quote(out, s.data);
		buf_puts(out, " {\n    label=");
		dot_quote(out, k->title);
		buf_puts(out, ";\n");
		for (struct task *t = k->first; t; t = t->tnext) {
			buf_reset(&s);
			buf_printf(&s, "%s\n%s", t->id, task_status_name(t->status));
			buf_puts(out, "    ");
			dot_quote(out, t->id);
			buf_puts(out, " [label=");
			dot_quote(out, s.data);
			buf_printf(out, ", fillcolor=%s];\n", status_colour(t->status));
		}
		buf_puts(out, "  }\n");
	}
	buf_free(&s);
	for (struct task *t = o->tasks; t; t = t->next)
		for (size_t i = 0; i < t->ndeps; i++) {
			buf_puts(out, "  ");
			dot_quote(out, t->deps[i]->id);
			buf_puts(out, " -> ");
			dot_quote(out, t->id);
			buf_puts(out, ";\n");
		}
	buf_puts(out, "}\n");
}

/* --- fragments, chunks and sections --- */

/* The lists of fragments the big documents are made of. */
enum section {
	S_TRACK, S_TASK, S_WORKER, S_DAG_NODE, S_DAG_EDGES, S_FIN_TRACK, S_FIN_WORKER, S_COUNT
};

static const enum render_list section_list[S_COUNT] = {
	[S_TRACK] = RL_TRACKS, [S_TASK] = RL_TASKS, [S_WORKER] = RL_WORKERS,
	[S_DAG_NODE] = RL_TASKS, [S_DAG_EDGES] = RL_TASKS, [S_FIN_TRACK] = RL_TRACKS,
	[S_FIN_WORKER] = RL_WORKERS,
};

/* The fragments of RENDER_CHUNK slots joined by ',': immutable once made,
 * shared by reference between the cache and the documents being written. */
struct chunk {
	size_t refs;    /* atomic */
	size_t len;
	char text[];
};

struct render_sections {
	struct chunk **chunks[S_COUNT];   /* NULL: to be made again */
	size_t cap[S_COUNT];
	int64_t used_ns[S_COUNT];         /* when a document last needed it */
};

static void chunk_unref(struct chunk *c)
{
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(c);
}

static size_t list_slots(const struct orch *o, enum render_list l)
{
	return l == RL_TASKS ? o->ntask_slots : l == RL_TRACKS ? o->ntrack_slots : o->nworkers;
}

/* One object's fragment in section s; false when it has none (an empty slot,
 * a worker that reported no usage, a task without edges). */
static bool fragment(struct orch *o, enum section s, size_t pos, struct buf *b)
{
	const struct task *t = section_list[s] == RL_TASKS ? o->task_at[pos] : NULL;
	const struct track *k = section_list[s] == RL_TRACKS ? o->track_at[pos] : NULL;
	const struct worker *w = section_list[s] == RL_WORKERS ? o->workers[pos] : NULL;
	if (!t && !k && !w)
		return false;
	switch (s) {
	case S_TRACK:
		render_track(o, k, false, b);
		return true;
	case S_TASK:
		render_task(o, t, 0, b);
		return true;
	case S_WORKER:
		render_worker(o, w, b);
		return true;
	case S_DAG_NODE:
		task_head(b, t);
		jw_lit(b, ",\"priority\":");
		jw_i64(b, t->priority);
		buf_putc(b, '}');
		return true;
	case S_DAG_EDGES:
		/* from the dep to the task that waits for it: the order work flows */
		for (size_t i = 0; i < t->ndeps; i++) {
			if (i)
				buf_putc(b, ',');
			jw_lit(b, "{\"from\":");
			jw_str(b, t->deps[i]->id);
			jw_lit(b, ",\"to\":");
			jw_str(b, t->id);
			buf_putc(b, '}');
		}
		return t->ndeps > 0;
	case S_FIN_TRACK:
		jw_str(b, k->id);
		jw_lit(b, ":{");
		usage_body(o, &k->usage, b);
		buf_putc(b, ',');
		budget_field(b, k->budget_micro);
		jw_lit(b, ",\"status\":");
		jw_str(b, track_status_name(k->status));
		buf_putc(b, '}');
		return true;
	case S_FIN_WORKER:
		if (!w->usage.n)
			return false;
		buf_putc(b, '"');
		jw_i64(b, w->id);
		jw_lit(b, "\":");
		render_usage(o, &w->usage, b);
		return true;
	default:
		return false;
	}
}

static struct chunk *chunk_make(struct orch *o, enum section s, size_t index, struct buf *tmp)
{
	size_t end = (index + 1) * RENDER_CHUNK, slots = list_slots(o, section_list[s]);
	buf_reset(tmp);
	for (size_t pos = index * RENDER_CHUNK; pos < end && pos < slots; pos++) {
		size_t mark = tmp->len;
		if (mark)
			buf_putc(tmp, ',');
		if (!fragment(o, s, pos, tmp))
			tmp->len = mark;
	}
	struct chunk *c = xmalloc(sizeof *c + tmp->len + 1);
	c->refs = 1;
	c->len = tmp->len;
	memcpy(c->text, tmp->data ? tmp->data : "", tmp->len);
	c->text[tmp->len] = '\0';
	return c;
}

void render_init(struct orch *o)
{
	o->sections = xcalloc(1, sizeof *o->sections);
}

void render_free(struct orch *o)
{
	if (!o->sections)
		return;
	for (int s = 0; s < S_COUNT; s++) {
		for (size_t i = 0; i < o->sections->cap[s]; i++)
			chunk_unref(o->sections->chunks[s][i]);
		free(o->sections->chunks[s]);
	}
	free(o->sections);
	o->sections = NULL;
}

void render_trim(struct orch *o, int64_t idle_ns)
{
	struct chunk **gone[S_COUNT] = {0};
	size_t ngone[S_COUNT] = {0};
	pthread_mutex_lock(&o->lock);
	struct render_sections *rs = o->sections;
	int64_t now = time_mono_ns();
	for (int s = 0; rs && s < S_COUNT; s++)
		if (rs->cap[s] && now - rs->used_ns[s] >= idle_ns) {
			gone[s] = rs->chunks[s];
			ngone[s] = rs->cap[s];
			rs->chunks[s] = NULL;
			rs->cap[s] = 0;
		}
	pthread_mutex_unlock(&o->lock);
	/* a document being written holds its own references */
	bool freed = false;
	for (int s = 0; s < S_COUNT; s++) {
		for (size_t i = 0; i < ngone[s]; i++)
			chunk_unref(gone[s][i]);
		free(gone[s]);
		freed = freed || ngone[s];
	}
	if (freed)
		malloc_trim(0);   /* the chunks are small: give their pages back too */
}

void render_mark(struct orch *o, enum render_list list, size_t pos)
{
	struct render_sections *rs = o->sections;
	size_t i = pos / RENDER_CHUNK;
	if (!rs)
		return;
	for (int s = 0; s < S_COUNT; s++)
		if (section_list[s] == list && i < rs->cap[s] && rs->chunks[s][i]) {
			chunk_unref(rs->chunks[s][i]);
			rs->chunks[s][i] = NULL;
		}
}

static size_t section_chunks(struct orch *o, enum section s)
{
	size_t n = (list_slots(o, section_list[s]) + RENDER_CHUNK - 1) / RENDER_CHUNK;
	struct render_sections *rs = o->sections;
	if (n > rs->cap[s]) {
		size_t cap = rs->cap[s] ? rs->cap[s] : 16;
		while (cap < n)
			cap *= 2;
		rs->chunks[s] = xrealloc(rs->chunks[s], cap * sizeof **rs->chunks);
		memset(rs->chunks[s] + rs->cap[s], 0, (cap - rs->cap[s]) * sizeof **rs->chunks);
		rs->cap[s] = cap;
	}
	return n;
}

/* Makes up to max missing chunks of the sections in mask; returns how many
 * were missing before. */
static size_t sections_fill(struct orch *o, unsigned mask, size_t max, struct buf *tmp)
{
	size_t missing = 0;
	int64_t now = time_mono_ns();
	for (int s = 0; s < S_COUNT; s++) {
		if (!(mask & (1u << s)))
			continue;
		o->sections->used_ns[s] = now;
		size_t n = section_chunks(o, (enum section)s);
		for (size_t i = 0; i < n; i++) {
			if (o->sections->chunks[s][i])
				continue;
			if (missing++ < max)
				o->sections->chunks[s][i] = chunk_make(o, (enum section)s, i, tmp);
		}
	}
	return missing;
}

/* --- documents --- */

/* A document as it is gathered under the lock: literal text, and runs of
 * chunk references, in order; written out once the lock is released. */
struct part {
	bool chunks;            /* a section's chunks, else text */
	size_t start, end;      /* in doc_plan.text or doc_plan.refs */
};

struct doc_plan {
	struct buf text;
	struct chunk **refs;
	size_t nrefs, cap;
	struct part *parts;
	size_t nparts;
};

static void plan_part(struct doc_plan *p, bool chunks, size_t start, size_t end)
{
	p->parts = xrealloc(p->parts, (p->nparts + 1) * sizeof *p->parts);
	p->parts[p->nparts++] = (struct part){chunks, start, end};
}

/* Text written into p->text since mark becomes a part. */
static void plan_text(struct doc_plan *p, size_t *mark)
{
	if (p->text.len > *mark)
		plan_part(p, false, *mark, p->text.len);
	*mark = p->text.len;
}

static void plan_section(struct doc_plan *p, struct orch *o, enum section s, size_t *mark)
{
	plan_text(p, mark);
	size_t n = section_chunks(o, s), start = p->nrefs;
	if (p->nrefs + n > p->cap) {
		p->cap = (p->nrefs + n) * 2;
		p->refs = xrealloc(p->refs, p->cap * sizeof *p->refs);
	}
	for (size_t i = 0; i < n; i++) {
		struct chunk *c = o->sections->chunks[s][i];
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
		p->refs[p->nrefs++] = c;
	}
	plan_part(p, true, start, p->nrefs);
}

static void plan_financial(struct doc_plan *p, struct orch *o, size_t *mark)
{
	struct buf *b = &p->text;
	jw_lit(b, "{\"currency\":\"USD\",\"total\":");
	render_usage(o, &o->usage, b);
	jw_lit(b, ",\"tracks\":{");
	plan_section(p, o, S_FIN_TRACK, mark);
	jw_lit(b, "},\"workers\":{");
	plan_section(p, o, S_FIN_WORKER, mark);
	jw_lit(b, "},\"prices\":{");
	for (size_t i = 0; i < o->nprices; i++) {
		const struct price *pr = &o->prices[i];
		if (i)
			buf_putc(b, ',');
		jw_str(b, pr->model);
		jw_lit(b, ":{\"input_per_mtok\":");
		jw_usd(b, pr->input);
		jw_lit(b, ",\"output_per_mtok\":");
		jw_usd(b, pr->output);
		jw_lit(b, ",\"cache_read_per_mtok\":");
		jw_usd(b, pr->cache_read);
		jw_lit(b, ",\"cache_write_per_mtok\":");
		jw_usd(b, pr->cache_write);
		buf_putc(b, '}');
	}
	jw_lit(b, "}}");
}

static unsigned doc_sections(enum render_doc_kind kind)
{
	switch (kind) {
	case RENDER_STATE:
		return 1u << S_TRACK | 1u << S_TASK | 1u << S_WORKER | 1u << S_FIN_TRACK |
		       1u << S_FIN_WORKER;
	case RENDER_WORKERS: return 1u << S_WORKER;
	case RENDER_TRACKS: return 1u << S_TRACK;
	case RENDER_DAG: return 1u << S_DAG_NODE | 1u << S_DAG_EDGES;
	case RENDER_FINANCIAL: return 1u << S_FIN_TRACK | 1u << S_FIN_WORKER;
	}
	return 0;
}

/* Lock held, every chunk the document needs present. */
static void plan_doc(struct doc_plan *p, struct orch *o, enum render_doc_kind kind)
{
	struct buf *b = &p->text;
	size_t mark = 0;
	switch (kind) {
	case RENDER_STATE:
		jw_lit(b, "{\"seq\":");
		jw_i64(b, (int64_t)events_seq(&o->events));
		jw_lit(b, ",\"version\":\"" ORCHFS_VERSION "\",\"started_at\":");
		jw_time(b, o->started_ms);
		jw_lit(b, ",\"pipeline\":");
		render_pipeline(o, b);
		jw_lit(b, ",\"tracks\":[");
		plan_section(p, o, S_TRACK, &mark);
		jw_lit(b, "],\"tasks\":[");
		plan_section(p, o, S_TASK, &mark);
		jw_lit(b, "],\"workers\":[");
		plan_section(p, o, S_WORKER, &mark);
		jw_lit(b, "],\"metrics\":");
		plan_financial(p, o, &mark);
		buf_putc(b, '}');
		break;
	case RENDER_WORKERS:
		jw_lit(b, "{\"running\":");
		jw_i64(b, o->running);
		jw_lit(b, ",\"total\":");
		jw_i64(b, (int64_t)o->nworkers);
		jw_lit(b, ",\"workers\":[");
		plan_section(p, o, S_WORKER, &mark);
		jw_lit(b, "]}");
		break;
	case RENDER_TRACKS:
		jw_lit(b, "{\"tracks\":[");
		plan_section(p, o, S_TRACK, &mark);
		jw_lit(b, "]}");
		break;
	case RENDER_DAG:
		jw_lit(b, "{\"nodes\":[");
		plan_section(p, o, S_DAG_NODE, &mark);
		jw_lit(b, "],\"edges\":[");
		plan_section(p, o, S_DAG_EDGES, &mark);
		jw_lit(b, "]}");
		break;
	case RENDER_FINANCIAL:
		plan_financial(p, o, &mark);
		break;
	}
	plan_text(p, &mark);
}

/* Chunks made per lock hold while a document's cache is cold: between two
 * holds the scheduler and every other thread get their turn. */
#define FILL_PER_HOLD 32

void render_doc(struct orch *o, enum render_doc_kind kind, const char *extra, struct buf *out)
{
	unsigned mask = doc_sections(kind);
	struct doc_plan p = {0};
	struct buf tmp = BUF_INIT;
	pthread_mutex_lock(&o->lock);
	/* Cold chunks are made a few per hold; the last few, and the gathering,
	 * in one hold so the document is one moment of the model. */
	for (int round = 0; round < 1000 && sections_fill(o, mask, FILL_PER_HOLD, &tmp) > FILL_PER_HOLD;
	     round++) {
		pthread_mutex_unlock(&o->lock);
		pthread_mutex_lock(&o->lock);
	}
	sections_fill(o, mask, SIZE_MAX, &tmp);
	plan_doc(&p, o, kind);
	pthread_mutex_unlock(&o->lock);
	buf_free(&tmp);

	size_t total = p.text.len + (extra ? strlen(extra) : 0) + 4;
	for (size_t i = 0; i < p.nrefs; i++)
		total += p.refs[i]->len + 1;
	buf_reserve(out, total);
	for (size_t i = 0; i < p.nparts; i++) {
		const struct part *pt = &p.parts[i];
		if (!pt->chunks) {
			buf_append(out, p.text.data + pt->start, pt->end - pt->start);
			continue;
		}
		bool first = true;
		for (size_t r = pt->start; r < pt->end; r++) {
			if (!p.refs[r]->len)
				continue;
			if (!first)
				buf_putc(out, ',');
			buf_append(out, p.refs[r]->text, p.refs[r]->len);
			first = false;
		}
	}
	if (extra && kind == RENDER_STATE) {
		out->len--;   /* the closing brace: extra goes before it */
		buf_puts(out, extra);
		buf_putc(out, '}');
	}
	buf_putc(out, '\n');
	for (size_t i = 0; i < p.nrefs; i++)
		chunk_unref(p.refs[i]);
	free(p.refs);
	free(p.parts);
	buf_free(&p.text);
}
