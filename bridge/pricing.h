/* pricing: model prices and the exact arithmetic of token usage into money.
 * Prices come from --pricing FILE, JSON (README, "The daemon"):
 *   {"model-a":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3}}
 * Cost is computed from token totals per model, never from rounded per-report
 * amounts, so summing reports by hand gives the same micro-dollars. */
#ifndef ORCHFS_PRICING_H
#define ORCHFS_PRICING_H

#include "orch.h"

/* Parses a pricing document; on success *prices is malloc'd. */
int pricing_parse(const char *json, size_t len, struct price **prices, size_t *n,
		  struct orch_err *err);
int pricing_load(const char *path, struct price **prices, size_t *n, struct orch_err *err);
const struct price *pricing_find(const struct price *prices, size_t n, const char *model);
/* Micro-dollars for one model's token counts (rounded half up); 0 when unpriced. */
int64_t pricing_cost(const struct price *p, const struct usage *u);

/* usage sets: per-model token totals */
void usage_add(struct usage_set *set, const struct usage *u);
void usage_merge(struct usage_set *into, const struct usage_set *from);
int64_t usage_set_cost(const struct usage_set *set, const struct price *prices, size_t n);
void usage_set_free(struct usage_set *set);
/* Totals over every model (model field left empty). */
struct usage usage_total(const struct usage_set *set);

#endif
