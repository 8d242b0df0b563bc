/* model: ids, status names, lookups and the string->pointer index behind them. */
#include "orch.h"

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
	s->key = xstrdup(key);
	s->value = value;
}

size_t hashmap_size(const struct hashmap *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->cap; i++)
		n += m->slots[i].key && m->slots[i].key != TOMBSTONE;
	return n;
}

void hashmap_clear(struct hashmap *m, void (*fn)(void *value))
{
	for (size_t i = 0; i < m->cap; i++) {
		struct hm_slot *s = &m->slots[i];
		if (s->key && s->key != TOMBSTONE) {
			if (fn)
				fn(s->value);
			free(s->key);
		}
		s->key = NULL;
		s->value = NULL;
	}
	m->used = 0;
}

void hashmap_del(struct hashmap *m, const char *key)
{
	struct hm_slot *s = hm_probe(m, key, false);
	if (!s)
		return;
	free(s->key);
	s->key = TOMBSTONE;
	s->value = NULL;
}

/* --- lookups and records --- */

struct task *task_find(struct orch *o, const char *id)
{
	return hashmap_get(o->task_index, id);
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
	free(t->deps);
	free(t->workers);
	free(t);
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	free(w->command);
	free(w->cwd);
	free(w->model);
	strv_free(w->env, w->nenv);
	free(w->log_path);
	free(w->usage.v);
	buf_free(&w->trace);
	free(w);
}

uint64_t orch_event(struct orch *o, struct worker *w, const char *channel, const char *type,
		    cJSON *data)
{
	char *line = NULL;
	uint64_t seq = events_publish(&o->events, channel, type, data, w ? &line : NULL);
	if (w) {
		buf_puts(&w->trace, line);
		free(line);
	}
	return seq;
}
