/* model: ids, status names, lookups, the string->pointer index behind them,
 * and the incremental bookkeeping of tasks: counts by status per track and in
 * all, the ready heap, reverse edges, the running list, and the dirty lists
 * that let sched_recompute look only at what a change touched. */
#include "orch.h"
#include "pricing.h"
#include "render.h"

#include <stdlib.h>
#include <string.h>

bool id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > ID_MAX)
		return false;
	if (!((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= '0' && id[0] <= '9')))
		return false;
	for (size_t i = 1; i < n; i++) {
		char c = id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

const char *task_status_name(enum task_status s)
{
	static const char *const names[] = {"blocked", "ready", "running", "done",
					    "failed", "killed", "skipped", "held"};
	return names[s];
}

const char *worker_status_name(enum worker_status s)
{
	static const char *const names[] = {"running", "exited", "failed", "killed", "lost"};
	return names[s];
}

const char *track_status_name(enum track_status s)
{
	static const char *const names[] = {"active", "done", "failed", "over_budget"};
	return names[s];
}

const char *pipeline_status_name(enum pipeline_status s)
{
	static const char *const names[] = {"running", "paused", "frozen"};
	return names[s];
}

/* --- hashmap: open addressing, FNV-1a, tombstones; grows at 50% load --- */

struct hm_slot {
	char *key;          /* NULL = empty; TOMBSTONE = deleted */
	void *value;
};

struct hashmap {
	struct hm_slot *slots;
	size_t cap, used;   /* used counts tombstones too, so probes stay short */
	size_t count;       /* live keys */
};

static char tombstone_mark;
#define TOMBSTONE (&tombstone_mark)

static uint64_t hm_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

struct hashmap *hashmap_new(void)
{
	struct hashmap *m = xcalloc(1, sizeof *m);
	m->cap = 64;
	m->slots = xcalloc(m->cap, sizeof *m->slots);
	return m;
}

void hashmap_free(struct hashmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		if (m->slots[i].key && m->slots[i].key != TOMBSTONE)
			free(m->slots[i].key);
	free(m->slots);
	free(m);
}

static struct hm_slot *hm_probe(struct hashmap *m, const char *key, bool for_insert)
{
	size_t mask = m->cap - 1, i = hm_hash(key) & mask;
	struct hm_slot *free_slot = NULL;
	for (;;) {
		struct hm_slot *s = &m->slots[i];
		if (!s->key)
			return for_insert && free_slot ? free_slot : (for_insert ? s : NULL);
		if (s->key == TOMBSTONE) {
			if (!free_slot)
				free_slot = s;
		} else if (strcmp(s->key, key) == 0) {
			return s;
		}
		i = (i + 1) & mask;
	}
}

static void hm_grow(struct hashmap *m)
{
	struct hm_slot *old = m->slots;
	size_t oldcap = m->cap;
	/* Rehashing drops tombstones: when they are most of the load, the same
	 * size will do (a map that sees many deletes does not grow forever). */
	if (m->count * 4 >= m->cap)
		m->cap *= 2;
	m->slots = xcalloc(m->cap, sizeof *m->slots);
	m->used = 0;
	for (size_t i = 0; i < oldcap; i++) {
		if (old[i].key && old[i].key != TOMBSTONE) {
			*hm_probe(m, old[i].key, true) = old[i];
			m->used++;
		}
	}
	free(old);
}

void *hashmap_get(struct hashmap *m, const char *key)
{
	struct hm_slot *s = hm_probe(m, key, false);
	return s ? s->value : NULL;
}

void hashmap_put(struct hashmap *m, const char *key, void *value)
{
	if ((m->used + 1) * 2 > m->cap)
		hm_grow(m);
	struct hm_slot *s = hm_probe(m, key, true);
	if (s->key && s->key != TOMBSTONE) {
		s->value = value;
		return;
	}
	if (!s->key)
		m->used++;
	m->count++;
	s->key = xstrdup(key);
	s->value = value;
}

size_t hashmap_size(const struct hashmap *m)
{
	return m->count;
}

/* Empties m, handing each entry to whichever of the two callbacks is set. */
static void hm_reset(struct hashmap *m, void (*value_fn)(void *value),
		     void (*each_fn)(void *arg, const char *key, void *value), void *arg)
{
	if (!m->used)
		return;   /* a cleared map stays cheap to clear: no walk over empty slots */
	for (size_t i = 0; i < m->cap; i++) {
		struct hm_slot *s = &m->slots[i];
		if (s->key && s->key != TOMBSTONE) {
			if (value_fn)
				value_fn(s->value);
			if (each_fn)
				each_fn(arg, s->key, s->value);
			free(s->key);
		}
		s->key = NULL;
		s->value = NULL;
	}
	m->used = 0;
	m->count = 0;
}

void hashmap_clear(struct hashmap *m, void (*fn)(void *value))
{
	hm_reset(m, fn, NULL, NULL);
}

void hashmap_clear_each(struct hashmap *m, void (*fn)(void *arg, const char *key, void *value),
			void *arg)
{
	hm_reset(m, NULL, fn, arg);
}

void hashmap_del(struct hashmap *m, const char *key)
{
	struct hm_slot *s = hm_probe(m, key, false);
	if (!s)
		return;
	free(s->key);
	s->key = TOMBSTONE;
	s->value = NULL;
	m->count--;
}

/* --- lookups and records --- */

struct task *task_find(struct orch *o, const char *id)
{
	return hashmap_get(o->task_index, id);
}

const char *task_title(const struct task *t)
{
	return t->title ? t->title : t->id;
}

struct track *track_find(struct orch *o, const char *id)
{
	return hashmap_get(o->track_index, id);
}

struct worker *worker_find(struct orch *o, int id)
{
	if (id < 1 || (size_t)id > o->nworkers)
		return NULL;
	return o->workers[id - 1];
}

struct track *track_new(struct orch *o, const char *id, const char *title, int64_t budget_micro)
{
	struct track *k = xcalloc(1, sizeof *k);
	strcpy(k->id, id);
	k->title = xstrdup(title ? title : id);
	k->budget_micro = budget_micro;
	k->created_ms = time_now_ms();
	ARRAY_GROW(o->track_at, o->track_at_cap, o->ntrack_slots + 1);
	k->pos = o->ntrack_slots++;
	o->track_at[k->pos] = k;
	render_mark(o, RL_TRACKS, k->pos);
	*o->tracks_tail = k;
	o->tracks_tail = &k->next;
	hashmap_put(o->track_index, id, k);
	o->ntracks++;
	return k;
}

char **strv_dup(char *const *v, size_t n)
{
	if (!n)
		return NULL;
	char **r = xcalloc(n, sizeof *r);
	for (size_t i = 0; i < n; i++)
		r[i] = xstrdup(v[i]);
	return r;
}

void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void task_free(struct task *t)
{
	if (!t)
		return;
	free(t->title);
	free(t->command);
	free(t->cwd);
	free(t->model);
	strv_free(t->env, t->nenv);
	strv_free(t->slurm, t->nslurm);
	free(t->deps);
	free(t->rdeps);
	free(t->workers);
	free(t);
}

struct worker *worker_placeholder(int id)
{
	struct worker *w = xcalloc(1, sizeof *w);
	w->id = id;
	w->status = WORKER_LOST;
	w->command = xstrdup("");
	w->cwd = xstrdup("/");
	w->log_path = xstrdup("/dev/null");
	w->runner = RUNNER_LOCAL;
	w->cpu_us = -1;
	w->memory_peak = -1;
	w->exit_code = -1;
	return w;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	free(w->command);
	free(w->cwd);
	free(w->model);
	strv_free(w->env, w->nenv);
	strv_free(w->runner_options, w->nrunner_options);
	free(w->runner_ref);
	free(w->log_path);
	free(w->usage.v);
	free(w);
}

/* The objects an event names changed: their fragments are made again. */
static void mark_named(struct orch *o, struct worker *w, enum event_kind kind, const cJSON *data)
{
	const char *task = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "task"));
	const char *track = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "track"));
	struct task *t = task ? task_find(o, task) : NULL;
	struct track *k = track ? track_find(o, track) : NULL;
	if (t)
		render_mark(o, RL_TASKS, t->pos);
	if (k)
		render_mark(o, RL_TRACKS, k->pos);
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "worker");
	if (!id && event_kinds[kind].channel == EV_WORKERS)
		id = cJSON_GetObjectItemCaseSensitive(data, "id");
	if (!w && cJSON_IsNumber(id))
		w = worker_find(o, (int)id->valuedouble);
	if (w)
		render_mark(o, RL_WORKERS, (size_t)w->id - 1);
}

uint64_t orch_event(struct orch *o, struct worker *w, enum event_kind kind, cJSON *data)
{
	if (o->sections)
		mark_named(o, w, kind, data);
	return events_publish(&o->events, kind, data, w ? w->task_id : NULL,
			      w ? w->track_id : NULL);
}

void track_free(struct track *k)
{
	free(k->title);
	usage_set_free(&k->usage);
	free(k);
}

static void track_unmark(struct orch *o, struct track *k)
{
	if (!k->dirty_pos)
		return;
	struct track *moved = o->dirty_tracks[--o->ndirty_tracks];
	o->dirty_tracks[k->dirty_pos - 1] = moved;
	moved->dirty_pos = k->dirty_pos;
	k->dirty_pos = 0;
}

struct track *track_unlink(struct orch *o, struct track *k)
{
	struct track *prev = NULL;
	for (struct track **pp = &o->tracks; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			if (o->tracks_tail == &k->next)
				o->tracks_tail = pp;
			break;
		}
	track_unmark(o, k);
	hashmap_del(o->track_index, k->id);
	o->ntracks--;
	o->track_at[k->pos] = NULL;   /* slots are never reused */
	render_mark(o, RL_TRACKS, k->pos);
	return prev;
}

void track_relink(struct orch *o, struct track *k, struct track *prev)
{
	struct track **pp = prev ? &prev->next : &o->tracks;
	k->next = *pp;
	*pp = k;
	if (!k->next)
		o->tracks_tail = &k->next;
	hashmap_put(o->track_index, k->id, k);
	o->ntracks++;
	o->track_at[k->pos] = k;
	render_mark(o, RL_TRACKS, k->pos);
	track_mark(o, k);
}

struct archived_track *archive_find(struct orch *o, const char *id)
{
	return hashmap_get(o->archive_index, id);
}

void archive_add(struct orch *o, struct archived_track *a)
{
	ARRAY_GROW(o->archive, o->archive_cap, o->narchive + 1);
	o->archive[o->narchive++] = a;
	hashmap_put(o->archive_index, a->id, a);
}

void archived_free(struct archived_track *a)
{
	if (!a)
		return;
	free(a->title);
	free(a->doc);
	free(a);
}

void track_drop(struct orch *o, struct track *k)
{
	for (struct track **pp = &o->tracks; *pp; pp = &(*pp)->next)
		if (*pp == k) {
			*pp = k->next;
			if (o->tracks_tail == &k->next)
				o->tracks_tail = pp;
			break;
		}
	if (k->dirty_pos) {
		struct track *moved = o->dirty_tracks[--o->ndirty_tracks];
		o->dirty_tracks[k->dirty_pos - 1] = moved;
		moved->dirty_pos = k->dirty_pos;
	}
	hashmap_del(o->track_index, k->id);
	o->ntracks--;
	o->track_at[k->pos] = NULL;
	if (k->pos + 1 == o->ntrack_slots)
		o->ntrack_slots--;   /* the newest, as undo logs go */
	render_mark(o, RL_TRACKS, k->pos);
	free(k->title);
	usage_set_free(&k->usage);
	free(k);
}

/* --- the dirty lists --- */

void task_mark(struct orch *o, struct task *t)
{
	if (t->dirty_pos)
		return;
	ARRAY_GROW(o->dirty_tasks, o->dirty_tasks_cap, o->ndirty_tasks + 1);
	o->dirty_tasks[o->ndirty_tasks++] = t;
	t->dirty_pos = o->ndirty_tasks;
}

static void task_unmark(struct orch *o, struct task *t)
{
	if (!t->dirty_pos)
		return;
	struct task *moved = o->dirty_tasks[--o->ndirty_tasks];
	o->dirty_tasks[t->dirty_pos - 1] = moved;
	moved->dirty_pos = t->dirty_pos;
	t->dirty_pos = 0;
}

void track_mark(struct orch *o, struct track *k)
{
	if (k->dirty_pos)
		return;
	ARRAY_GROW(o->dirty_tracks, o->dirty_tracks_cap, o->ndirty_tracks + 1);
	o->dirty_tracks[o->ndirty_tracks++] = k;
	k->dirty_pos = o->ndirty_tracks;
}

/* --- the ready heap: higher priority first, then older --- */

static bool ready_before(const struct task *a, const struct task *b)
{
	return a->priority != b->priority ? a->priority > b->priority : a->order < b->order;
}

static void heap_place(struct orch *o, size_t i, struct task *t)
{
	o->ready[i] = t;
	t->heap_pos = i + 1;
}

static void heap_up(struct orch *o, size_t i)
{
	struct task *t = o->ready[i];
	while (i > 0 && ready_before(t, o->ready[(i - 1) / 2])) {
		heap_place(o, i, o->ready[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	heap_place(o, i, t);
}

static void heap_down(struct orch *o, size_t i)
{
	struct task *t = o->ready[i];
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= o->nready)
			break;
		if (c + 1 < o->nready && ready_before(o->ready[c + 1], o->ready[c]))
			c++;
		if (!ready_before(o->ready[c], t))
			break;
		heap_place(o, i, o->ready[c]);
		i = c;
	}
	heap_place(o, i, t);
}

void ready_insert(struct orch *o, struct task *t)
{
	if (t->heap_pos)
		return;
	ARRAY_GROW(o->ready, o->ready_cap, o->nready + 1);
	o->ready[o->nready++] = t;
	heap_up(o, o->nready - 1);
}

void ready_remove(struct orch *o, struct task *t)
{
	if (!t->heap_pos)
		return;
	size_t i = t->heap_pos - 1;
	t->heap_pos = 0;
	struct task *last = o->ready[--o->nready];
	if (i == o->nready)
		return;
	heap_place(o, i, last);
	heap_up(o, i);
	heap_down(o, last->heap_pos - 1);
}

struct task *ready_peek(struct orch *o)
{
	return o->nready ? o->ready[0] : NULL;
}

/* --- running workers --- */

void run_add(struct orch *o, struct worker *w)
{
	ARRAY_GROW(o->run, o->run_cap, (size_t)o->running + 1);
	o->run[o->running++] = w;
	w->run_pos = (size_t)o->running;
}

void run_remove(struct orch *o, struct worker *w)
{
	if (!w->run_pos)
		return;
	struct worker *moved = o->run[--o->running];
	o->run[w->run_pos - 1] = moved;
	moved->run_pos = w->run_pos;
	w->run_pos = 0;
}

/* --- tasks --- */

bool task_dep_satisfied(const struct task *dep)
{
	return dep->status == TASK_DONE || dep->status == TASK_SKIPPED;
}

static bool status_stuck(enum task_status s)
{
	return s == TASK_FAILED || s == TASK_KILLED;
}

void task_set_status(struct orch *o, struct task *t, enum task_status s)
{
	enum task_status from = t->status;
	if (from == s)
		return;
	t->status = s;
	t->track->counts[from]--;
	t->track->counts[s]++;
	o->counts[from]--;
	o->counts[s]++;
	if (s == TASK_READY)
		ready_insert(o, t);
	else if (from == TASK_READY)
		ready_remove(o, t);
	/* Back among the waiting (a retry, a release): its deps decide again. */
	bool waits = s == TASK_BLOCKED || s == TASK_READY;
	if (waits && from != TASK_BLOCKED && from != TASK_READY)
		task_mark(o, t);
	track_mark(o, t->track);
	if (task_dep_satisfied(t) != (from == TASK_DONE || from == TASK_SKIPPED))
		for (size_t i = 0; i < t->nrdeps; i++)
			task_mark(o, t->rdeps[i]);
	/* Whether a track can still finish hangs on every task upstream of its
	 * own: a task that fails (or is retried) changes that for each track
	 * downstream. */
	if (status_stuck(s) != status_stuck(from))
		o->downstream_dirty = true;
}

static void rdep_add(struct task *d, struct task *t)
{
	d->rdeps = xrealloc(d->rdeps, (d->nrdeps + 1) * sizeof *d->rdeps);
	d->rdeps[d->nrdeps++] = t;
}

static void rdep_remove(struct task *d, const struct task *t)
{
	for (size_t i = d->nrdeps; i-- > 0;)
		if (d->rdeps[i] == t) {
			d->rdeps[i] = d->rdeps[--d->nrdeps];
			return;
		}
}

void task_dep_insert(struct orch *o, struct task *t, size_t i, struct task *d)
{
	t->deps = xrealloc(t->deps, (t->ndeps + 1) * sizeof *t->deps);
	memmove(&t->deps[i + 1], &t->deps[i], (t->ndeps - i) * sizeof *t->deps);
	t->deps[i] = d;
	t->ndeps++;
	rdep_add(d, t);
	task_mark(o, t);
	track_mark(o, t->track);
	o->downstream_dirty = true;
}

void task_dep_add(struct orch *o, struct task *t, struct task *d)
{
	task_dep_insert(o, t, t->ndeps, d);
}

void task_dep_remove(struct orch *o, struct task *t, size_t i)
{
	rdep_remove(t->deps[i], t);
	memmove(&t->deps[i], &t->deps[i + 1], (t->ndeps - i - 1) * sizeof *t->deps);
	t->ndeps--;
	task_mark(o, t);
	track_mark(o, t->track);
	o->downstream_dirty = true;
}

static void counts_add(struct orch *o, struct task *t, int sign)
{
	t->track->counts[t->status] += (size_t)sign;
	o->counts[t->status] += (size_t)sign;
	t->track->ntasks += (size_t)sign;
	o->ntasks += (size_t)sign;
}

void task_link(struct orch *o, struct task *t)
{
	struct track *k = t->track;
	ARRAY_GROW(o->task_at, o->task_at_cap, o->ntask_slots + 1);
	t->pos = o->ntask_slots++;
	o->task_at[t->pos] = t;
	render_mark(o, RL_TASKS, t->pos);
	t->next = NULL;
	t->prev = o->tasks_last;
	*(t->prev ? &t->prev->next : &o->tasks) = t;
	o->tasks_last = t;
	t->tnext = NULL;
	t->tprev = k->last;
	*(t->tprev ? &t->tprev->tnext : &k->first) = t;
	k->last = t;
	hashmap_put(o->task_index, t->id, t);
	counts_add(o, t, 1);
	if (t->status == TASK_READY)
		ready_insert(o, t);
	task_mark(o, t);
	track_mark(o, k);
}

void task_unlink(struct orch *o, struct task *t)
{
	struct track *k = t->track;
	/* prev and tprev are left as they were: task_relink puts t back there */
	*(t->prev ? &t->prev->next : &o->tasks) = t->next;
	*(t->next ? &t->next->prev : &o->tasks_last) = t->prev;
	*(t->tprev ? &t->tprev->tnext : &k->first) = t->tnext;
	*(t->tnext ? &t->tnext->tprev : &k->last) = t->tprev;
	hashmap_del(o->task_index, t->id);
	o->task_at[t->pos] = NULL;
	render_mark(o, RL_TASKS, t->pos);
	counts_add(o, t, -1);
	ready_remove(o, t);
	task_unmark(o, t);
	for (size_t i = 0; i < t->ndeps; i++)
		rdep_remove(t->deps[i], t);
	track_mark(o, k);
	o->downstream_dirty = true;
}

void task_relink(struct orch *o, struct task *t)
{
	struct track *k = t->track;
	t->next = t->prev ? t->prev->next : o->tasks;
	*(t->prev ? &t->prev->next : &o->tasks) = t;
	*(t->next ? &t->next->prev : &o->tasks_last) = t;
	t->tnext = t->tprev ? t->tprev->tnext : k->first;
	*(t->tprev ? &t->tprev->tnext : &k->first) = t;
	*(t->tnext ? &t->tnext->tprev : &k->last) = t;
	hashmap_put(o->task_index, t->id, t);
	o->task_at[t->pos] = t;
	render_mark(o, RL_TASKS, t->pos);
	counts_add(o, t, 1);
	if (t->status == TASK_READY)
		ready_insert(o, t);
	for (size_t i = 0; i < t->ndeps; i++)
		rdep_add(t->deps[i], t);
	task_mark(o, t);
	track_mark(o, k);
	o->downstream_dirty = true;
}
