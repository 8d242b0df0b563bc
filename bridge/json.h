/* json: the few cJSON helpers orchfs needs on top of cJSON itself.
 * cJSON keeps numbers as doubles and clamps valueint to INT_MAX, so 64-bit
 * counters and money are printed as raw text and parsed with range checks. */
#ifndef ORCHFS_JSON_H
#define ORCHFS_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

/* Prints root compactly with a trailing newline into out, then deletes root. */
void json_emit(cJSON *root, struct buf *out);
/* Any cJSON tree as compact JSON, written the way jw writes (below). */
void json_write(struct buf *b, const cJSON *item);
cJSON *json_add_i64(cJSON *obj, const char *name, int64_t v);
/* Money: integer micro-dollars printed as USD with 6 decimals ("1.250000"). */
cJSON *json_add_usd(cJSON *obj, const char *name, int64_t micro);
/* "2026-11-24T11:20:11.123Z", or null for 0. */
cJSON *json_add_time(cJSON *obj, const char *name, int64_t ms);
cJSON *json_add_str_or_null(cJSON *obj, const char *name, const char *s);

/* jw: JSON written straight into a buf, for the big documents (no tree, one
 * pass). Keys are literals the caller writes with their punctuation:
 *   jw_lit(b, "{\"id\":"); jw_i64(b, 3); jw_lit(b, ",\"task\":"); jw_str(b, id);
 * Strings are escaped, and bytes that are not UTF-8 become U+FFFD, so every
 * document is valid UTF-8 JSON whatever a worker or a plan put in. */
#define jw_lit(b, s) buf_append((b), "" s, sizeof(s) - 1)   /* s: a string literal */
void jw_str(struct buf *b, const char *s);
void jw_strn(struct buf *b, const char *s, size_t len);
void jw_str_or_null(struct buf *b, const char *s);   /* NULL or "" -> null */
void jw_strv(struct buf *b, char *const *v, size_t n);  /* an array of strings */
void jw_i64(struct buf *b, int64_t v);
void jw_i64_or_null(struct buf *b, int64_t v);   /* negative (unknown) -> null */
void jw_double(struct buf *b, double v);
void jw_bool(struct buf *b, bool v);
void jw_usd(struct buf *b, int64_t micro);
void jw_time(struct buf *b, int64_t ms);              /* 0 -> null */

/* Where s stops being UTF-8 (overlong forms and surrogates are not), or len. */
size_t utf8_check(const char *s, size_t len);
/* Where JSON text s escapes a NUL in a string (\u0000, which cJSON would
 * keep as the string's end), or len. */
size_t json_nul_escape(const char *s, size_t len);

/* Whole numbers only, within [min, max]; false for anything else. */
bool json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out);
/* Non-negative decimal number of USD into micro-dollars, rounded. */
bool json_usd(const cJSON *v, int64_t *micro);

/* Formats ms since the epoch as ISO-8601 UTC into out (>= 25 bytes). */
void time_iso(int64_t ms, char *out, size_t size);
int64_t time_now_ms(void);
/* Monotonic clock in nanoseconds, for durations and deadlines. */
int64_t time_mono_ns(void);
/* The monotonic time timeout_ms from now, for pthread_cond_timedwait on a
 * condition whose clock is CLOCK_MONOTONIC. */
struct timespec time_mono_deadline(int timeout_ms);

#endif
