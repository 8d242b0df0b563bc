/* pricing: model prices and the exact arithmetic of token usage into money.
 * Prices come from --pricing FILE, JSON (README, "The daemon"):
 *   {"model-a":{"input_per_mtok":3,"output_per_mtok":15,"cache_read_per_mtok":0.3}}
 * Cost is computed from token totals per model, never from rounded per-report
 * amounts, so summing reports by hand gives the same micro-dollars. */
#ifndef ORCHFS_PRICING_H
#define ORCHFS_PRICING_H

#include "orch.h"

/* The bounds that keep money and counts exact (README, "Usage and cost"):
 * one report carries at most USAGE_REPORT_MAX tokens of each kind; no total
 * (a worker's, a track's, the daemon's) passes USAGE_TOTAL_MAX tokens of a
 * kind or reports, nor MONEY_MAX micro-dollars of cost (both 2^53, the
 * largest whole numbers JSON readers keep exactly); a price is at most
 * PRICE_MAX_USD per million tokens. A report that would pass one is refused
 * with EOVERFLOW and changes nothing. */
#define USAGE_REPORT_MAX 1000000000000LL      /* 10^12 tokens */
#define USAGE_TOTAL_MAX 9007199254740992LL    /* 2^53 */
#define MONEY_MAX 9007199254740992LL          /* 2^53 micro-dollars: about $9.007 billion */
#define PRICE_MAX_USD 100000                  /* $100,000 per million tokens */

/* Parses a pricing document; on success *prices is malloc'd. */
int pricing_parse(const char *json, size_t len, struct price **prices, size_t *n,
		  struct orch_err *err);
int pricing_load(const char *path, struct price **prices, size_t *n, struct orch_err *err);
const struct price *pricing_find(const struct price *prices, size_t n, const char *model);
/* Micro-dollars for one model's token counts (rounded half up); 0 when
 * unpriced. Never wraps: at most MONEY_MAX (only prices raised after the
 * totals were taken can reach it). */
int64_t pricing_cost(const struct price *p, const struct usage *u);

/* usage sets: per-model token totals */
void usage_add(struct usage_set *set, const struct usage *u);
void usage_merge(struct usage_set *into, const struct usage_set *from);
int64_t usage_set_cost(const struct usage_set *set, const struct price *prices, size_t n);
/* Whether adding u to set keeps it within the bounds above; if not, says
 * which (naming the set as who) in err, EOVERFLOW. */
int usage_check_add(const struct usage_set *set, const struct usage *u,
		    const struct price *prices, size_t n, const char *who, struct orch_err *err);
void usage_set_free(struct usage_set *set);
/* Totals over every model (model field left empty). */
struct usage usage_total(const struct usage_set *set);

#endif
