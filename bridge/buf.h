/* buf: a growable byte buffer, the currency of every render and result.
 * Allocation failure aborts: a daemon that cannot allocate a few KiB has
 * nothing better to do, and every caller stays free of NULL checks. */
#ifndef ORCHFS_BUF_H
#define ORCHFS_BUF_H

#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;   /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
};

#define BUF_INIT {NULL, 0, 0}

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *data, size_t len);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Moves the first whole line of b (without its \n, or its \r\n) into
 * line: false while b holds no whole line. */
bool buf_take_line(struct buf *b, struct buf *line);
/* Hands the bytes to the caller (NUL-terminated, never NULL) and empties b. */
char *buf_steal(struct buf *b);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* An array p of *cap elements of size bytes, grown (doubling, from 16) so
 * that it holds at least n: ARRAY_GROW(v, cap, n) before v[n - 1] = ... */
void *xgrow(void *p, size_t *cap, size_t n, size_t size);
#define ARRAY_GROW(v, cap, n) ((v) = xgrow((v), &(cap), (n), sizeof *(v)))

/* A mutex the scheduler's thread takes: with priority inheritance, so that a
 * thread holding it is raised to the scheduler's priority while the
 * scheduler waits (no inversion when that thread is real-time). */
void mutex_init_pi(pthread_mutex_t *m);
/* A condition whose timed waits count on CLOCK_MONOTONIC (time_mono_deadline),
 * so that a change of the wall clock moves no timeout. */
void cond_init_mono(pthread_cond_t *c);

#endif
