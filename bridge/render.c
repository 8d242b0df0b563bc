/* render: JSON and DOT views of tracks, tasks, workers, pipeline and money. */
#include "render.h"

#include <stdio.h>
#include <string.h>

#include "cmd.h"
#include "pricing.h"

static void add_usage_fields(cJSON *obj, const struct usage *u, int64_t cost)
{
	json_add_i64(obj, "input_tokens", u->input);
	json_add_i64(obj, "output_tokens", u->output);
	json_add_i64(obj, "cache_read_tokens", u->cache_read);
	json_add_i64(obj, "cache_write_tokens", u->cache_write);
	json_add_i64(obj, "reports", u->reports);
	json_add_usd(obj, "cost_usd", cost);
}

cJSON *render_usage(const struct orch *o, const struct usage_set *set)
{
	cJSON *r = cJSON_CreateObject();
	struct usage total = usage_total(set);
	add_usage_fields(r, &total, usage_set_cost(set, o->prices, o->nprices));
	cJSON *models = cJSON_AddObjectToObject(r, "models");
	for (size_t i = 0; i < set->n; i++) {
		const struct price *p = pricing_find(o->prices, o->nprices, set->v[i].model);
		cJSON *m = cJSON_AddObjectToObject(models, set->v[i].model);
		add_usage_fields(m, &set->v[i], pricing_cost(p, &set->v[i]));
		cJSON_AddBoolToObject(m, "priced", p != NULL);
	}
	return r;
}

cJSON *render_worker(struct orch *o, const struct worker *w)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "id", w->id);
	cJSON_AddStringToObject(r, "status", worker_status_name(w->status));
	json_add_str_or_null(r, "task", w->task_id);
	json_add_str_or_null(r, "track", w->track_id);
	cJSON_AddNumberToObject(r, "pid", w->pid);
	cJSON_AddStringToObject(r, "command", w->command);
	cJSON_AddStringToObject(r, "cwd", w->cwd);
	json_add_str_or_null(r, "model", w->model);
	json_add_time(r, "started_at", w->started_ms);
	json_add_time(r, "ended_at", w->ended_ms);
	/* Only once ended: a running clock would make every render differ. */
	if (w->ended_ms)
		cJSON_AddNumberToObject(r, "runtime_s", (double)(w->ended_ms - w->started_ms) / 1000.0);
	else
		cJSON_AddNullToObject(r, "runtime_s");
	if (w->exit_code >= 0)
		cJSON_AddNumberToObject(r, "exit_code", w->exit_code);
	else
		cJSON_AddNullToObject(r, "exit_code");
	json_add_str_or_null(r, "signal", w->term_signal ? signal_name(w->term_signal) : NULL);
	cJSON_AddBoolToObject(r, "timed_out", w->timed_out);
	cJSON_AddNumberToObject(r, "timeout_s", w->timeout_s);
	cJSON_AddStringToObject(r, "log", w->log_path);
	cJSON_AddItemToObject(r, "usage", render_usage(o, &w->usage));
	return r;
}

cJSON *render_workers(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddNumberToObject(r, "running", o->running);
	cJSON_AddNumberToObject(r, "total", (double)o->nworkers);
	cJSON *arr = cJSON_AddArrayToObject(r, "workers");
	for (size_t i = 0; i < o->nworkers; i++)
		cJSON_AddItemToArray(arr, render_worker(o, o->workers[i]));
	return r;
}

cJSON *render_task(struct orch *o, const struct task *t, bool with_workers)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "id", t->id);
	cJSON_AddStringToObject(r, "track", t->track->id);
	cJSON_AddStringToObject(r, "title", t->title);
	cJSON_AddStringToObject(r, "status", task_status_name(t->status));
	cJSON_AddStringToObject(r, "command", t->command);
	cJSON *deps = cJSON_AddArrayToObject(r, "deps");
	for (size_t i = 0; i < t->ndeps; i++)
		cJSON_AddItemToArray(deps, cJSON_CreateString(t->deps[i]->id));
	json_add_str_or_null(r, "cwd", t->cwd);
	cJSON *env = cJSON_AddObjectToObject(r, "env");
	for (size_t i = 0; i < t->nenv; i++) {
		const char *eq = strchr(t->env[i], '=');
		char key[256];
		snprintf(key, sizeof key, "%.*s", (int)(eq - t->env[i]), t->env[i]);
		cJSON_AddStringToObject(env, key, eq + 1);
	}
	cJSON_AddNumberToObject(r, "retries", t->retries_initial);
	cJSON_AddNumberToObject(r, "retries_left", t->retries);
	cJSON_AddNumberToObject(r, "timeout_s", t->timeout_s);
	json_add_str_or_null(r, "model", t->model);
	cJSON_AddNumberToObject(r, "priority", t->priority);
	json_add_time(r, "created_at", t->created_ms);
	if (t->nworkers)
		cJSON_AddNumberToObject(r, "worker", t->workers[t->nworkers - 1]);
	else
		cJSON_AddNullToObject(r, "worker");
	if (!with_workers) {
		cJSON *ids = cJSON_AddArrayToObject(r, "workers");
		for (size_t i = 0; i < t->nworkers; i++)
			cJSON_AddItemToArray(ids, cJSON_CreateNumber(t->workers[i]));
		return r;
	}
	cJSON *arr = cJSON_AddArrayToObject(r, "workers");
	struct usage_set usage = {0};
	for (size_t i = 0; i < t->nworkers; i++) {
		struct worker *w = worker_find(o, t->workers[i]);
		cJSON_AddItemToArray(arr, render_worker(o, w));
		usage_merge(&usage, &w->usage);
	}
	cJSON_AddItemToObject(r, "usage", render_usage(o, &usage));
	usage_set_free(&usage);
	return r;
}

static void add_status_counts(cJSON *obj, struct orch *o, const struct track *k)
{
	const size_t *counts = k ? k->counts : o->counts;
	size_t total = k ? k->ntasks : o->ntasks;
	cJSON *c = cJSON_AddObjectToObject(obj, "tasks_by_status");
	for (int s = 0; s <= TASK_HELD; s++)
		cJSON_AddNumberToObject(c, task_status_name((enum task_status)s), (double)counts[s]);
	cJSON_AddNumberToObject(obj, "task_count", (double)total);
}

cJSON *render_track(struct orch *o, const struct track *k, bool with_tasks)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "id", k->id);
	cJSON_AddStringToObject(r, "title", k->title);
	cJSON_AddStringToObject(r, "status", track_status_name(k->status));
	if (k->budget_micro >= 0)
		json_add_usd(r, "budget_usd", k->budget_micro);
	else
		cJSON_AddNullToObject(r, "budget_usd");
	json_add_usd(r, "cost_usd", usage_set_cost(&k->usage, o->prices, o->nprices));
	json_add_time(r, "created_at", k->created_ms);
	add_status_counts(r, o, k);
	if (with_tasks) {
		cJSON *arr = cJSON_AddArrayToObject(r, "tasks");
		for (struct task *t = k->first; t; t = t->tnext)
			cJSON_AddItemToArray(arr, render_task(o, t, false));
		cJSON_AddItemToObject(r, "usage", render_usage(o, &k->usage));
	}
	return r;
}

cJSON *render_tracks(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	cJSON *arr = cJSON_AddArrayToObject(r, "tracks");
	for (struct track *k = o->tracks; k; k = k->next)
		cJSON_AddItemToArray(arr, render_track(o, k, false));
	return r;
}

cJSON *render_pipeline(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "status", pipeline_status_name(o->pipeline));
	cJSON_AddNumberToObject(r, "max_workers", o->max_workers);
	cJSON_AddNumberToObject(r, "running", o->running);
	add_status_counts(r, o, NULL);
	return r;
}

cJSON *render_dag(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	cJSON *nodes = cJSON_AddArrayToObject(r, "nodes");
	cJSON *edges = cJSON_AddArrayToObject(r, "edges");
	for (struct task *t = o->tasks; t; t = t->next) {
		cJSON *n = cJSON_CreateObject();
		cJSON_AddStringToObject(n, "id", t->id);
		cJSON_AddStringToObject(n, "track", t->track->id);
		cJSON_AddStringToObject(n, "title", t->title);
		cJSON_AddStringToObject(n, "status", task_status_name(t->status));
		cJSON_AddNumberToObject(n, "priority", t->priority);
		cJSON_AddItemToArray(nodes, n);
		for (size_t i = 0; i < t->ndeps; i++) {
			cJSON *e = cJSON_CreateObject();
			/* from the dep to the task that waits for it: the order work flows */
			cJSON_AddStringToObject(e, "from", t->deps[i]->id);
			cJSON_AddStringToObject(e, "to", t->id);
			cJSON_AddItemToArray(edges, e);
		}
	}
	return r;
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
	for (struct track *k = o->tracks; k; k = k->next) {
		buf_puts(out, "  subgraph ");
		struct buf name = BUF_INIT;
		buf_printf(&name, "cluster_%s", k->id);
		dot_quote(out, name.data);
		buf_free(&name);
		buf_puts(out, " {\n    label=");
		dot_quote(out, k->title);
		buf_puts(out, ";\n");
		for (struct task *t = k->first; t; t = t->tnext) {
			struct buf label = BUF_INIT;
			buf_printf(&label, "%s\n%s", t->id, task_status_name(t->status));
			buf_puts(out, "    ");
			dot_quote(out, t->id);
			buf_puts(out, " [label=");
			dot_quote(out, label.data);
			buf_printf(out, ", fillcolor=%s];\n", status_colour(t->status));
			buf_free(&label);
		}
		buf_puts(out, "  }\n");
	}
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

cJSON *render_financial(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	cJSON_AddStringToObject(r, "currency", "USD");
	cJSON_AddItemToObject(r, "total", render_usage(o, &o->usage));
	cJSON *tracks = cJSON_AddObjectToObject(r, "tracks");
	for (struct track *k = o->tracks; k; k = k->next) {
		cJSON *t = render_usage(o, &k->usage);
		if (k->budget_micro >= 0)
			json_add_usd(t, "budget_usd", k->budget_micro);
		else
			cJSON_AddNullToObject(t, "budget_usd");
		cJSON_AddStringToObject(t, "status", track_status_name(k->status));
		cJSON_AddItemToObject(tracks, k->id, t);
	}
	cJSON *workers = cJSON_AddObjectToObject(r, "workers");
	for (size_t i = 0; i < o->nworkers; i++) {
		const struct worker *w = o->workers[i];
		if (!w->usage.n)
			continue;
		char id[16];
		snprintf(id, sizeof id, "%d", w->id);
		cJSON_AddItemToObject(workers, id, render_usage(o, &w->usage));
	}
	cJSON *prices = cJSON_AddObjectToObject(r, "prices");
	for (size_t i = 0; i < o->nprices; i++) {
		const struct price *p = &o->prices[i];
		cJSON *m = cJSON_AddObjectToObject(prices, p->model);
		json_add_usd(m, "input_per_mtok", p->input);
		json_add_usd(m, "output_per_mtok", p->output);
		json_add_usd(m, "cache_read_per_mtok", p->cache_read);
		json_add_usd(m, "cache_write_per_mtok", p->cache_write);
	}
	return r;
}

cJSON *render_state(struct orch *o)
{
	cJSON *r = cJSON_CreateObject();
	json_add_i64(r, "seq", (int64_t)events_seq(&o->events));
	cJSON_AddStringToObject(r, "version", ORCHFS_VERSION);
	json_add_time(r, "started_at", o->started_ms);
	cJSON_AddItemToObject(r, "pipeline", render_pipeline(o));
	cJSON *tracks = cJSON_AddArrayToObject(r, "tracks");
	for (struct track *k = o->tracks; k; k = k->next)
		cJSON_AddItemToArray(tracks, render_track(o, k, false));
	cJSON *tasks = cJSON_AddArrayToObject(r, "tasks");
	for (struct task *t = o->tasks; t; t = t->next)
		cJSON_AddItemToArray(tasks, render_task(o, t, false));
	cJSON *workers = cJSON_AddArrayToObject(r, "workers");
	for (size_t i = 0; i < o->nworkers; i++)
		cJSON_AddItemToArray(workers, render_worker(o, o->workers[i]));
	cJSON_AddItemToObject(r, "metrics", render_financial(o));
	return r;
}
