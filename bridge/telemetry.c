/* telemetry: tick and FUSE latency rings, counters, and /proc readings. */
#include "telemetry.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define RING 512

struct ring {
	int64_t v[RING];
	size_t n, next;
	int64_t max;
	uint64_t count, errors;
};

struct telemetry {
	pthread_mutex_t lock;
	int64_t start_ns;
	struct ring ticks;
	struct ring ops[TM_NOPS];
	uint64_t http_requests, http_errors, store_writes, store_bytes, store_syncs;
	unsigned ws_clients;
	uint64_t ws_max_queue, ws_sent, ws_dropped;
	uint64_t ws_depths[TM_WS_DEPTHS];
	size_t ws_ndepths;
	int64_t last_cpu_ns, last_wall_ns;
	double cpu_percent;
};

static const char *const op_names[TM_NOPS] = {
	"lookup", "getattr", "setattr", "readlink", "open", "read", "write",
	"release", "opendir", "readdir", "other",
};

struct telemetry *tm_create(void)
{
	struct telemetry *tm = xcalloc(1, sizeof *tm);
	mutex_init_pi(&tm->lock);
	tm->start_ns = tm->last_wall_ns = time_mono_ns();
	return tm;
}

void tm_destroy(struct telemetry *tm)
{
	if (!tm)
		return;
	pthread_mutex_destroy(&tm->lock);
	free(tm);
}

static void ring_add(struct ring *r, int64_t v, int failed)
{
	r->v[r->next] = v;
	r->next = (r->next + 1) % RING;
	if (r->n < RING)
		r->n++;
	if (v > r->max)
		r->max = v;
	r->count++;
	r->errors += failed != 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Percentiles of the last RING samples, in microseconds. */
static void ring_json(const struct ring *r, cJSON *obj)
{
	int64_t sorted[RING];
	memcpy(sorted, r->v, r->n * sizeof *sorted);
	qsort(sorted, r->n, sizeof *sorted, cmp_i64);
	double p50 = r->n ? (double)sorted[r->n / 2] / 1e3 : 0;
	double p99 = r->n ? (double)sorted[(r->n * 99) / 100 < r->n ? (r->n * 99) / 100 : r->n - 1] / 1e3 : 0;
	json_add_i64(obj, "count", (int64_t)r->count);
	cJSON_AddNumberToObject(obj, "p50_us", p50);
	cJSON_AddNumberToObject(obj, "p99_us", p99);
	cJSON_AddNumberToObject(obj, "max_us", (double)r->max / 1e3);
}

void tm_tick(struct telemetry *tm, int64_t duration_ns)
{
	pthread_mutex_lock(&tm->lock);
	ring_add(&tm->ticks, duration_ns, 0);
	pthread_mutex_unlock(&tm->lock);
}

void tm_fuse_op(struct telemetry *tm, enum tm_op op, int64_t duration_ns, int failed)
{
	pthread_mutex_lock(&tm->lock);
	ring_add(&tm->ops[op], duration_ns, failed);
	pthread_mutex_unlock(&tm->lock);
}

void tm_http(struct telemetry *tm, int failed)
{
	pthread_mutex_lock(&tm->lock);
	tm->http_requests++;
	tm->http_errors += failed != 0;
	pthread_mutex_unlock(&tm->lock);
}

void tm_ws(struct telemetry *tm, unsigned clients, uint64_t max_queue_bytes, uint64_t sent,
	   uint64_t dropped, const uint64_t *depths, size_t ndepths)
{
	pthread_mutex_lock(&tm->lock);
	tm->ws_ndepths = ndepths < TM_WS_DEPTHS ? ndepths : TM_WS_DEPTHS;
	memcpy(tm->ws_depths, depths, tm->ws_ndepths * sizeof *depths);
	tm->ws_clients = clients;
	tm->ws_max_queue = max_queue_bytes;
	tm->ws_sent = sent;
	tm->ws_dropped = dropped;
	pthread_mutex_unlock(&tm->lock);
}

void tm_store_write(struct telemetry *tm, uint64_t bytes)
{
	pthread_mutex_lock(&tm->lock);
	tm->store_writes++;
	tm->store_bytes += bytes;
	pthread_mutex_unlock(&tm->lock);
}

void tm_store_sync(struct telemetry *tm)
{
	pthread_mutex_lock(&tm->lock);
	tm->store_syncs++;
	pthread_mutex_unlock(&tm->lock);
}

static void add_threads(cJSON *obj)
{
	cJSON *arr = cJSON_AddArrayToObject(obj, "threads");
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return;
	long hz = sysconf(_SC_CLK_TCK);
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[300], line[512];
		snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		size_t n = fread(line, 1, sizeof line - 1, f);
		fclose(f);
		line[n] = '\0';
		/* comm is in parentheses and may hold spaces: parse around the last ')' */
		char *open = strchr(line, '('), *close = strrchr(line, ')');
		if (!open || !close)
			continue;
		unsigned long utime = 0, stime = 0;
		sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime);
		cJSON *t = cJSON_CreateObject();
		cJSON_AddNumberToObject(t, "tid", atoi(e->d_name));
		*close = '\0';
		cJSON_AddStringToObject(t, "name", open + 1);
		cJSON_AddNumberToObject(t, "cpu_s", (double)(utime + stime) / (double)hz);
		cJSON_AddItemToArray(arr, t);
	}
	closedir(d);
}

cJSON *tm_json(struct telemetry *tm)
{
	cJSON *r = cJSON_CreateObject();
	int64_t now = time_mono_ns();
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	int64_t cpu_ns = ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
			 ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}

	pthread_mutex_lock(&tm->lock);
	/* CPU percent over the interval since the previous reading (at least 100 ms). */
	if (now - tm->last_wall_ns >= 100000000) {
		tm->cpu_percent = 100.0 * (double)(cpu_ns - tm->last_cpu_ns) /
				  (double)(now - tm->last_wall_ns);
		tm->last_cpu_ns = cpu_ns;
		tm->last_wall_ns = now;
	}
	cJSON_AddNumberToObject(r, "uptime_s", (double)(now - tm->start_ns) / 1e9);
	cJSON *loop = cJSON_AddObjectToObject(r, "loop");
	ring_json(&tm->ticks, loop);
	cJSON_AddNumberToObject(loop, "rate_hz",
				(double)tm->ticks.count / ((double)(now - tm->start_ns) / 1e9));
	cJSON *proc = cJSON_AddObjectToObject(r, "process");
	cJSON_AddNumberToObject(proc, "cpu_s", (double)cpu_ns / 1e9);
	cJSON_AddNumberToObject(proc, "cpu_percent", tm->cpu_percent);
	json_add_i64(proc, "rss_bytes", (int64_t)rss * sysconf(_SC_PAGESIZE));
	cJSON *fuse = cJSON_AddObjectToObject(r, "fuse");
	for (int i = 0; i < TM_NOPS; i++) {
		if (!tm->ops[i].count)
			continue;
		cJSON *o = cJSON_AddObjectToObject(fuse, op_names[i]);
		ring_json(&tm->ops[i], o);
		json_add_i64(o, "errors", (int64_t)tm->ops[i].errors);
	}
	cJSON *http = cJSON_AddObjectToObject(r, "http");
	json_add_i64(http, "requests", (int64_t)tm->http_requests);
	json_add_i64(http, "errors", (int64_t)tm->http_errors);
	cJSON *ws = cJSON_AddObjectToObject(r, "websocket");
	cJSON_AddNumberToObject(ws, "clients", tm->ws_clients);
	json_add_i64(ws, "max_queue_bytes", (int64_t)tm->ws_max_queue);
	json_add_i64(ws, "messages_out", (int64_t)tm->ws_sent);
	json_add_i64(ws, "clients_dropped", (int64_t)tm->ws_dropped);
	cJSON *depths = cJSON_AddArrayToObject(ws, "queue_bytes");
	for (size_t i = 0; i < tm->ws_ndepths; i++)
		cJSON_AddItemToArray(depths, cJSON_CreateNumber((double)tm->ws_depths[i]));
	cJSON *store = cJSON_AddObjectToObject(r, "store");
	json_add_i64(store, "writes", (int64_t)tm->store_writes);
	json_add_i64(store, "bytes", (int64_t)tm->store_bytes);
	json_add_i64(store, "syncs", (int64_t)tm->store_syncs);
	pthread_mutex_unlock(&tm->lock);
	add_threads(proc);
	return r;
}
