/* json: cJSON helpers for 64-bit integers, money and timestamps. */
#include "json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <time.h>

void json_emit(cJSON *root, struct buf *out)
{
	char *s = cJSON_PrintUnformatted(root);
	if (!s) {
		fputs("orchfs: out of memory\n", stderr);
		abort();
	}
	buf_puts(out, s);
	buf_putc(out, '\n');
	cJSON_free(s);
	cJSON_Delete(root);
}

cJSON *json_add_i64(cJSON *obj, const char *name, int64_t v)
{
	char s[32];
	snprintf(s, sizeof s, "%" PRId64, v);
	return cJSON_AddRawToObject(obj, name, s);
}

cJSON *json_add_usd(cJSON *obj, const char *name, int64_t micro)
{
	char s[40];
	const char *sign = micro < 0 ? "-" : "";
	uint64_t m = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
	snprintf(s, sizeof s, "%s%" PRIu64 ".%06" PRIu64, sign, m / 1000000, m % 1000000);
	return cJSON_AddRawToObject(obj, name, s);
}

void time_iso(int64_t ms, char *out, size_t size)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char date[24];
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, size, "%s.%03dZ", date, (int)(ms % 1000));
}

cJSON *json_add_time(cJSON *obj, const char *name, int64_t ms)
{
	if (ms <= 0)
		return cJSON_AddNullToObject(obj, name);
	char s[40];
	time_iso(ms, s, sizeof s);
	return cJSON_AddStringToObject(obj, name, s);
}

cJSON *json_add_str_or_null(cJSON *obj, const char *name, const char *s)
{
	if (!s || !*s)
		return cJSON_AddNullToObject(obj, name);
	return cJSON_AddStringToObject(obj, name, s);
}

bool json_int(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	/* 2^53: beyond it a double no longer holds every whole number. */
	if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
		return false;
	if (d < (double)min || d > (double)max)
		return false;
	*out = (int64_t)d;
	return true;
}

bool json_usd(const cJSON *v, int64_t *micro)
{
	if (!cJSON_IsNumber(v))
		return false;
	double d = v->valuedouble;
	if (!isfinite(d) || d < 0 || d > 1e12)
		return false;
	*micro = llround(d * 1e6);
	return true;
}

int64_t time_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t time_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
