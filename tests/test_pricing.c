/* test_pricing: price parsing and exact integer money arithmetic, within
 * its bounds. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pricing.h"

static struct usage mk(const char *model, int64_t in, int64_t out, int64_t cr, int64_t cw)
{
	struct usage u = {.input = in, .output = out, .cache_read = cr, .cache_write = cw, .reports = 1};
	strcpy(u.model, model);
	return u;
}

static void test_parse(void **state)
{
	struct price *p;
	size_t n;
	struct orch_err err = {0};
	const char *doc = "{\"m1\":{\"input_per_mtok\":3,\"output_per_mtok\":15,"
			  "\"cache_read_per_mtok\":0.3,\"cache_write_per_mtok\":3.75},"
			  "\"cheap\":{\"input_per_mtok\":0.075}}";
	assert_int_equal(pricing_parse(doc, strlen(doc), &p, &n, &err), 0);
	assert_int_equal(n, 2);
	const struct price *m1 = pricing_find(p, n, "m1");
	assert_non_null(m1);
	assert_int_equal(m1->input, 3000000);
	assert_int_equal(m1->cache_read, 300000);
	assert_int_equal(pricing_find(p, n, "cheap")->output, 0);
	assert_null(pricing_find(p, n, "other"));
	free(p);
}

static void test_parse_errors(void **state)
{
	static const char *const bad[] = {
		"", "[]", "{\"m\":3}", "{\"m\":{\"input_per_mtok\":-1}}",
		"{\"m\":{\"input_per_mtok\":\"3\"}}", "{\"m\":{\"inptu_per_mtok\":3}}", "{\"m\":",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct price *p = NULL;
		size_t n = 0;
		struct orch_err err = {0};
		assert_int_equal(pricing_parse(bad[i], strlen(bad[i]), &p, &n, &err), -EINVAL);
		assert_true(err.message[0] != '\0');
	}
}

static void test_cost(void **state)
{
	struct price p = {.input = 3000000, .output = 15000000, .cache_read = 300000, .cache_write = 3750000};
	struct usage u = mk("m1", 1000000, 1000000, 0, 0);
	assert_int_equal(pricing_cost(&p, &u), 18000000);             /* $18 */
	u = mk("m1", 1, 1, 1, 1);
	assert_int_equal(pricing_cost(&p, &u), 22);                   /* 22.05 µ$ rounds down */
	u = mk("m1", 1200, 300, 0, 0);
	assert_int_equal(pricing_cost(&p, &u), 3600 + 4500);
	/* rounding happens once over the total, not per token kind */
	struct price cheap = {.input = 75000};
	u = mk("cheap", 7, 0, 0, 0);                                   /* 0.525 µ$ */
	assert_int_equal(pricing_cost(&cheap, &u), 1);
	assert_int_equal(pricing_cost(NULL, &u), 0);
	/* 2^53 tokens of each kind at the highest price neither wraps nor lies
	 * below the ceiling: it stops at MONEY_MAX */
	struct price dear = {.input = PRICE_MAX_USD * INT64_C(1000000), .output = PRICE_MAX_USD * INT64_C(1000000),
			     .cache_read = PRICE_MAX_USD * INT64_C(1000000), .cache_write = PRICE_MAX_USD * INT64_C(1000000)};
	u = mk("d", USAGE_TOTAL_MAX, USAGE_TOTAL_MAX, USAGE_TOTAL_MAX, USAGE_TOTAL_MAX);
	assert_int_equal(pricing_cost(&dear, &u), MONEY_MAX);
	u = mk("d", 1000, 0, 0, 0);
	assert_int_equal(pricing_cost(&dear, &u), 100000000);          /* $100 */
}

/* Totals never wrap: a report past a bound is refused, naming the bound */
static void test_bounds(void **state)
{
	struct orch_err err = {0};
	struct price *p = NULL;
	size_t n = 0;
	const char *ok = "{\"top\":{\"input_per_mtok\":100000}}";
	const char *over = "{\"top\":{\"input_per_mtok\":100000.000001}}";
	assert_int_equal(pricing_parse(ok, strlen(ok), &p, &n, &err), 0);
	assert_int_equal(p[0].input, PRICE_MAX_USD * INT64_C(1000000));
	free(p);
	assert_int_equal(pricing_parse(over, strlen(over), &p, &n, &err), -EINVAL);

	struct price prices[] = {{.model = "top", .input = PRICE_MAX_USD * INT64_C(1000000)}};
	struct usage_set s = {0};
	struct usage free_tokens = mk("unpriced", USAGE_TOTAL_MAX - 5, 0, 0, 0);
	usage_add(&s, &free_tokens);
	struct usage u = mk("unpriced", 5, 0, 0, 0);
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), 0);
	u.input = 6;
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), -EOVERFLOW);
	assert_non_null(strstr(err.message, "input tokens"));
	u = mk("other", 6, 0, 0, 0);   /* another model's total is its own */
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), 0);

	/* cost: 9e10 tokens at $100,000/Mtok is $9e9, under 2^53 micro-dollars */
	u = mk("top", 90000000000, 0, 0, 0);
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), 0);
	usage_add(&s, &u);
	assert_int_equal(usage_set_cost(&s, prices, 1), INT64_C(9000000000000000));
	u = mk("top", 100000000, 0, 0, 0);   /* $10,000 more passes it */
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), -EOVERFLOW);
	assert_non_null(strstr(err.message, "cost"));
	u = mk("top", 1, 0, 0, 0);
	assert_int_equal(usage_check_add(&s, &u, prices, 1, "w", &err), 0);
	usage_set_free(&s);
}

static void test_usage_sets(void **state)
{
	struct price prices[] = {{.model = "a", .input = 1000000}, {.model = "b", .output = 2000000}};
	struct usage_set s = {0};
	struct usage u1 = mk("a", 10, 5, 0, 0), u2 = mk("b", 1, 7, 0, 0), u3 = mk("a", 5, 0, 2, 0);
	usage_add(&s, &u1);
	usage_add(&s, &u2);
	usage_add(&s, &u3);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.v[0].input, 15);
	assert_int_equal(s.v[0].reports, 2);
	assert_int_equal(usage_set_cost(&s, prices, 2), 15 + 14);
	struct usage t = usage_total(&s);
	assert_int_equal(t.input, 16);
	assert_int_equal(t.output, 12);
	assert_int_equal(t.cache_read, 2);
	assert_int_equal(t.reports, 3);
	struct usage_set m = {0};
	usage_merge(&m, &s);
	usage_merge(&m, &s);
	assert_int_equal(m.v[1].output, 14);
	usage_set_free(&m);
	usage_set_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_cost),
		cmocka_unit_test(test_usage_sets),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
