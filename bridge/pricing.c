/* pricing: price table parsing and integer cost arithmetic. */
#include "pricing.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* USD per million tokens -> micro-dollars per million tokens (= pico per token). */
static bool price_field(const cJSON *model, const char *name, int64_t *out, struct orch_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, name);
	if (!v) {
		*out = 0;
		return true;
	}
	if (!json_usd(v, out) || *out > (int64_t)PRICE_MAX_USD * 1000000) {
		err_set(err, EINVAL, "pricing: model \"%s\": \"%s\" must be a number 0..%d",
			model->string, name, PRICE_MAX_USD);
		return false;
	}
	return true;
}

int pricing_parse(const char *json, size_t len, struct price **prices, size_t *n,
		  struct orch_err *err)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return err_set(err, EINVAL, "pricing: not a JSON object of models");
	}
	size_t count = (size_t)cJSON_GetArraySize(root), i = 0;
	struct price *p = xcalloc(count, sizeof *p);
	cJSON *m;
	cJSON_ArrayForEach(m, root) {
		/* "_comment", "_date": notes for people, as JSON has no comments */
		if (m->string[0] == '_')
			continue;
		static const char *const known[] = {"input_per_mtok", "output_per_mtok",
						    "cache_read_per_mtok", "cache_write_per_mtok"};
		if (!cJSON_IsObject(m) || strlen(m->string) == 0 || strlen(m->string) > MODEL_MAX) {
			err_set(err, EINVAL, "pricing: \"%s\" must name an object of prices", m->string);
			goto fail;
		}
		cJSON *f;
		cJSON_ArrayForEach(f, m) {
			bool ok = false;
			for (size_t k = 0; k < 4; k++)
				ok = ok || strcmp(f->string, known[k]) == 0;
			if (!ok) {
				err_set(err, EINVAL, "pricing: model \"%s\": unknown field \"%s\"",
					m->string, f->string);
				goto fail;
			}
		}
		strcpy(p[i].model, m->string);
		if (!price_field(m, known[0], &p[i].input, err) ||
		    !price_field(m, known[1], &p[i].output, err) ||
		    !price_field(m, known[2], &p[i].cache_read, err) ||
		    !price_field(m, known[3], &p[i].cache_write, err))
			goto fail;
		i++;
	}
	cJSON_Delete(root);
	*prices = p;
	*n = i;
	return 0;
fail:
	cJSON_Delete(root);
	free(p);
	return -err->errnum;
}

int pricing_load(const char *path, struct price **prices, size_t *n, struct orch_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, errno == ENOENT ? ENOENT : EACCES, "pricing: cannot open %s: %s",
			       path, strerror(errno));
	struct buf b = BUF_INIT;
	char chunk[8192];
	ssize_t r;
	while ((r = read(fd, chunk, sizeof chunk)) > 0 && b.len < (16u << 20))
		buf_append(&b, chunk, (size_t)r);
	close(fd);
	int rc = r < 0 ? err_set(err, EIO, "pricing: cannot read %s", path)
		       : pricing_parse(b.data ? b.data : "", b.len, prices, n, err);
	buf_free(&b);
	return rc;
}

const struct price *pricing_find(const struct price *prices, size_t n, const char *model)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(prices[i].model, model) == 0)
			return &prices[i];
	return NULL;
}

/* Micro-dollars, unbounded: counts <= 2^63 times prices <= 10^11 fit 128 bits. */
static __int128 cost_exact(const struct price *p, const struct usage *u)
{
	if (!p)
		return 0;
	/* Sum in pico-dollars first, round once: the total of a model's four
	 * token kinds is then exact to a micro-dollar. */
	__int128 pico = (__int128)u->input * p->input + (__int128)u->output * p->output +
			(__int128)u->cache_read * p->cache_read +
			(__int128)u->cache_write * p->cache_write;
	return (pico + 500000) / 1000000;
}

int64_t pricing_cost(const struct price *p, const struct usage *u)
{
	__int128 c = cost_exact(p, u);
	return c > MONEY_MAX ? MONEY_MAX : (int64_t)c;
}

int usage_check_add(const struct usage_set *set, const struct usage *u,
		    const struct price *prices, size_t n, const char *who, struct orch_err *err)
{
	static const char *const kinds[] = {"input", "output", "cache_read", "cache_write",
					    "reports"};
	struct usage sum = *u;   /* u's model once u is added */
	__int128 cost = 0;       /* the other models' */
	for (size_t i = 0; i < set->n; i++) {
		const struct usage *x = &set->v[i];
		if (strcmp(x->model, u->model) != 0) {
			cost += cost_exact(pricing_find(prices, n, x->model), x);
			continue;
		}
		int64_t *to[] = {&sum.input, &sum.output, &sum.cache_read, &sum.cache_write,
				 &sum.reports};
		const int64_t had[] = {x->input, x->output, x->cache_read, x->cache_write,
				       x->reports};
		for (size_t k = 0; k < 5; k++) {
			if (*to[k] > USAGE_TOTAL_MAX - had[k])
				return err_set(err, EOVERFLOW,
					       "this report would take %s's %s%s for %s past %lld",
					       who, kinds[k], k < 4 ? " tokens" : "", u->model,
					       USAGE_TOTAL_MAX);
			*to[k] += had[k];
		}
	}
	cost += cost_exact(pricing_find(prices, n, u->model), &sum);
	if (cost > MONEY_MAX)
		return err_set(err, EOVERFLOW,
			       "this report would take %s's cost past $9007199254.740992, the most "
			       "orchfs counts exactly", who);
	return 0;
}

void usage_add(struct usage_set *set, const struct usage *u)
{
	for (size_t i = 0; i < set->n; i++) {
		struct usage *x = &set->v[i];
		if (strcmp(x->model, u->model) == 0) {
			x->input += u->input;
			x->output += u->output;
			x->cache_read += u->cache_read;
			x->cache_write += u->cache_write;
			x->reports += u->reports;
			return;
		}
	}
	set->v = xrealloc(set->v, (set->n + 1) * sizeof *set->v);
	set->v[set->n++] = *u;
}

void usage_merge(struct usage_set *into, const struct usage_set *from)
{
	for (size_t i = 0; i < from->n; i++)
		usage_add(into, &from->v[i]);
}

int64_t usage_set_cost(const struct usage_set *set, const struct price *prices, size_t n)
{
	__int128 total = 0;
	for (size_t i = 0; i < set->n; i++)
		total += cost_exact(pricing_find(prices, n, set->v[i].model), &set->v[i]);
	return total > MONEY_MAX ? MONEY_MAX : (int64_t)total;
}

void usage_set_free(struct usage_set *set)
{
	free(set->v);
	set->v = NULL;
	set->n = 0;
}

struct usage usage_total(const struct usage_set *set)
{
	struct usage t = {0};
	for (size_t i = 0; i < set->n; i++) {
		t.input += set->v[i].input;
		t.output += set->v[i].output;
		t.cache_read += set->v[i].cache_read;
		t.cache_write += set->v[i].cache_write;
		t.reports += set->v[i].reports;
	}
	return t;
}
