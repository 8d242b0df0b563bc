/* check: the properties the fuzzers assert. A failed CHECK aborts, which
 * libFuzzer reports as a crash with the input that caused it. */
#ifndef ORCHFS_FUZZ_CHECK_H
#define ORCHFS_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"

/* libFuzzer's entry point, one per target */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* Every byte orchfs emits is valid UTF-8 JSON (a trailing newline allowed). */
static inline void check_json(const char *s, size_t len)
{
	CHECK(s && len > 0);
	CHECK(utf8_check(s, len) == len);
	cJSON *doc = cJSON_ParseWithLength(s, len);
	CHECK(doc != NULL);
	cJSON_Delete(doc);
}

#endif
