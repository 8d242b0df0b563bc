/* json: cJSON helpers for 64-bit integers, money and timestamps. */
#include "json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void json_emit(cJSON *root, struct buf *out)
{
	json_write(out, root);
	buf_putc(out, '\n');
	cJSON_Delete(root);
}

/* cJSON_Print formats every number with printf and copies strings as they
 * are: this writes through jw instead, whole numbers as integers and text as
 * valid UTF-8, like every other document. */
void json_write(struct buf *b, const cJSON *item)
{
	switch (item->type & 0xFF) {
	case cJSON_False: jw_lit(b, "false"); break;
	case cJSON_True: jw_lit(b, "true"); break;
	case cJSON_Number: {
		double d = item->valuedouble;
		if (d == (double)(int64_t)d && fabs(d) <= 9007199254740992.0)
			jw_i64(b, (int64_t)d);
		else
			jw_double(b, d);
		break;
	}
	case cJSON_String: jw_str(b, item->valuestring ? item->valuestring : ""); break;
	case cJSON_Raw: buf_puts(b, item->valuestring ? item->valuestring : "null"); break;
	case cJSON_Array:
	case cJSON_Object: {
		bool object = (item->type & 0xFF) == cJSON_Object;
		buf_putc(b, object ? '{' : '[');
		for (const cJSON *c = item->child; c; c = c->next) {
			if (c != item->child)
				buf_putc(b, ',');
			if (object) {
				jw_str(b, c->string ? c->string : "");
				buf_putc(b, ':');
			}
			json_write(b, c);
		}
		buf_putc(b, object ? '}' : ']');
		break;
	}
	default: jw_lit(b, "null"); break;
	}
}

/* --- jw --- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3
		     : (c & 0xF8) == 0xF0 ? 4 : 0;
	if (!len || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
	for (size_t i = 1; i < len; i++)
		cp = cp << 6 | (s[i] & 0x3F);
	/* overlong forms, surrogates and beyond U+10FFFF are not UTF-8 */
	static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
	if (cp < least[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return 0;
	return len;
}

size_t utf8_check(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		size_t n = p[i] < 0x80 ? 1 : utf8_seq(p + i, len - i);
		if (!n)
			return i;
		i += n;
	}
	return len;
}

size_t json_nul_escape(const char *s, size_t len)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"') {
			in_string = !in_string;
		} else if (in_string && s[i] == '\\' && i + 1 < len) {
			if (s[i + 1] == 'u' && i + 6 <= len && !memcmp(s + i + 2, "0000", 4))
				return i;
			i++;   /* the escaped character, whatever it is */
		}
	}
	return len;
}

void jw_strn(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	buf_reserve(b, len + 2);
	buf_putc(b, '"');
	size_t run = 0;   /* bytes copied as they are, flushed in one append */
	for (size_t i = 0; i < len;) {
		unsigned char c = p[i];
		size_t n = c >= 0x20 && c != '"' && c != '\\' ? utf8_seq(p + i, len - i) : 0;
		if (n) {
			run += n;
			i += n;
			continue;
		}
		buf_append(b, p + i - run, run);
		run = 0;
		char esc[8] = {'\\', 0};
		size_t elen = 2;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\t': esc[1] = 't'; break;
		case '\r': esc[1] = 'r'; break;
		default:
			if (c < 0x20) {
				esc[1] = 'u';
				esc[2] = esc[3] = '0';
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 15];
				elen = 6;
			} else {
				buf_append(b, "\xEF\xBF\xBD", 3);   /* U+FFFD for a byte that is not UTF-8 */
				elen = 0;
			}
		}
		buf_append(b, esc, elen);
		i++;
	}
	buf_append(b, p + len - run, run);
	buf_putc(b, '"');
}

void jw_str(struct buf *b, const char *s)
{
	jw_strn(b, s, strlen(s));
}

void jw_i64_or_null(struct buf *b, int64_t v)
{
	if (v >= 0)
		jw_i64(b, v);
	else
		jw_lit(b, "null");
}

void jw_strv(struct buf *b, char *const *v, size_t n)
{
	buf_putc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(b, ',');
		jw_str(b, v[i]);
	}
	buf_putc(b, ']');
}

void jw_str_or_null(struct buf *b, const char *s)
{
	if (s && *s)
		jw_str(b, s);
	else
		jw_lit(b, "null");
}

void jw_i64(struct buf *b, int64_t v)
{
	char s[24], *p = s + sizeof s;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--p = '-';
	buf_append(b, p, (size_t)(s + sizeof s - p));
}

void jw_double(struct buf *b, double v)
{
	if (!isfinite(v)) {
		jw_lit(b, "null");
		return;
	}
	char s[32];
	int n = snprintf(s, sizeof s, "%.15g", v);
	buf_append(b, s, (size_t)n);
}

void jw_bool(struct buf *b, bool v)
{
	if (v)
		jw_lit(b, "true");
	else
		jw_lit(b, "false");
}

void jw_usd(struct buf *b, int64_t micro)
{
	const char *sign = micro < 0 ? "-" : "";
	uint64_t m = micro < 0 ? (uint64_t)0 - (uint64_t)micro : (uint64_t)micro;
	char s[40];
	int n = snprintf(s, sizeof s, "%s%" PRIu64 ".%06" PRIu64, sign, m / 1000000, m % 1000000);
	buf_append(b, s, (size_t)n);
}

void jw_time(struct buf *b, int64_t ms)
{
	if (ms <= 0) {
		jw_lit(b, "null");
		return;
	}
	char s[40];
	time_iso(ms, s, sizeof s);
	buf_putc(b, '"');
	buf_puts(b, s);
	buf_putc(b, '"');
}

cJSON *json_add_i64(cJSON *obj, const char *name, int64_t v)
{
	char s[32];
	snprintf(s, sizeof s, "%" PRId64, v);
	return cJSON_AddRawToObject(obj, name, s);
}

cJSON *json_add_usd(cJSON *obj, const char *name, int64_t micro)
{
	struct buf s = BUF_INIT;
	jw_usd(&s, micro);
	cJSON *r = cJSON_AddRawToObject(obj, name, s.data);
	buf_free(&s);
	return r;
}

/* Writes n digits of v at p. */
static char *put_digits(char *p, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + n;
}

void time_iso(int64_t ms, char *out, size_t size)
{
	/* Every event carries a time: days to a civil date by arithmetic (the
	 * proleptic Gregorian calendar, eras of 400 years), not gmtime_r and
	 * strftime. */
	if (ms < 0)
		ms = 0;
	int64_t secs = ms / 1000, days = secs / 86400;
	unsigned sod = (unsigned)(secs % 86400), msec = (unsigned)(ms % 1000);
	int64_t z = days + 719468, era = z / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	unsigned day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
	int64_t year = (int64_t)yoe + era * 400 + (month <= 2);
	if (year > 9999 || size < 25) {
		snprintf(out, size, "%s", "0000-01-01T00:00:00.000Z");
		return;
	}
	char *p = put_digits(out, (unsigned)year, 4);
	*p++ = '-';
	p = put_digits(p, month, 2);
	*p++ = '-';
	p = put_digits(p, day, 2);
	*p++ = 'T';
	p = put_digits(p, sod / 3600, 2);
	*p++ = ':';
	p = put_digits(p, sod / 60 % 60, 2);
	*p++ = ':';
	p = put_digits(p, sod % 60, 2);
	*p++ = '.';
	p = put_digits(p, msec, 3);
	*p++ = 'Z';
	*p = 0;
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

struct timespec time_mono_deadline(int timeout_ms)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += timeout_ms / 1000;
	t.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}
