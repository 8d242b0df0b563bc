/* wsfan: WebSocket fan-out of orchfs's events measured with C clients, so
 * that the clients are not what is measured (a Python client costs more CPU
 * per message than the server). N clients subscribe to `metrics` over raw
 * sockets (one epoll thread); a producer thread writes R usage reports to a
 * worker's usage file at RATE a second, noting CLOCK_MONOTONIC before each
 * write; each client notes when each report's event arrives (the report's
 * index is its input_tokens). Prints deliveries, misses, duplicates, order,
 * and latency p50/p99/max over all deliveries.
 *   wsfan PORT TOKEN_FILE USAGE_FILE CLIENTS REPORTS RATE TAG [STALLED]
 * STALLED 1 adds a client that subscribes and never reads. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct client {
	int fd;
	unsigned char *buf;   /* bytes not yet parsed into frames */
	size_t len, cap;
	long got, dups, disorder, last;
	int64_t *recv;        /* recv[i]: when report i arrived (0: not yet) */
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *what)
{
	perror(what);
	exit(1);
}

/* A masked text frame, as a client must send. */
static void send_text(int fd, const char *text)
{
	size_t n = strlen(text);
	unsigned char frame[512], mask[4] = {1, 2, 3, 4};
	size_t h = 0;
	frame[h++] = 0x81;
	frame[h++] = (unsigned char)(0x80 | n);   /* our messages are short */
	memcpy(frame + h, mask, 4);
	h += 4;
	for (size_t i = 0; i < n; i++)
		frame[h + i] = (unsigned char)text[i] ^ mask[i % 4];
	if (write(fd, frame, h + n) != (ssize_t)(h + n))
		die("send");
}

static int connect_client(int port, const char *token)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("connect");
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	char req[512];
	int n = snprintf(req, sizeof req,
			 "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
			 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: orchfs.v1\r\n"
			 "Authorization: Bearer %s\r\n\r\n",
			 port, token);
	if (write(fd, req, (size_t)n) != n)
		die("handshake");
	/* the 101 and its headers, a byte at a time: nothing of a frame is taken */
	char head[2048];
	size_t h = 0;
	while (h < sizeof head - 1 && (h < 4 || memcmp(head + h - 4, "\r\n\r\n", 4))) {
		if (read(fd, head + h, 1) != 1)
			die("handshake reply");
		h++;
	}
	head[h] = '\0';
	if (strncmp(head, "HTTP/1.1 101", 12)) {
		fprintf(stderr, "wsfan: handshake refused: %s\n", head);
		exit(1);
	}
	send_text(fd, "{\"op\":\"subscribe\",\"channels\":[\"metrics\"],\"id\":1}");
	return fd;
}

/* One text frame's payload: the report it is about, if it is one of ours. */
static void on_text(struct client *c, const char *p, size_t n, const char *tag, long reports,
		    int64_t t)
{
	if (!memmem(p, n, tag, strlen(tag)))
		return;
	const char *k = memmem(p, n, "\"input_tokens\":", 15);
	if (!k)
		return;
	long i = strtol(k + 15, NULL, 10);
	if (i < 0 || i >= reports)
		return;
	if (c->recv[i]) {
		c->dups++;
		return;
	}
	c->recv[i] = t;
	c->got++;
	if (i < c->last)
		c->disorder++;
	c->last = i;
}

/* Reads what the socket has and parses every whole frame; -1 at close. */
static int on_readable(struct client *c, const char *tag, long reports)
{
	for (;;) {
		if (c->cap - c->len < 65536) {
			c->cap = c->cap * 2 + 65536;
			c->buf = realloc(c->buf, c->cap);
		}
		ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (r == 0)
			return -1;
		if (r < 0)
			return errno == EAGAIN ? 0 : -1;
		c->len += (size_t)r;
		int64_t t = now_ns();
		size_t off = 0;
		while (c->len - off >= 2) {
			unsigned char *f = c->buf + off;
			uint64_t n = f[1] & 0x7f;
			size_t h = 2;
			if (n == 126) {
				if (c->len - off < 4)
					break;
				n = (uint64_t)f[2] << 8 | f[3];
				h = 4;
			} else if (n == 127) {
				if (c->len - off < 10)
					break;
				n = 0;
				for (int b = 0; b < 8; b++)
					n = n << 8 | f[2 + b];
				h = 10;
			}
			if (c->len - off < h + n)
				break;
			if ((f[0] & 0x0f) == 8)
				return -1;
			if ((f[0] & 0x0f) == 1)
				on_text(c, (const char *)f + h, (size_t)n, tag, reports, t);
			off += h + (size_t)n;
		}
		memmove(c->buf, c->buf + off, c->len - off);
		c->len -= off;
	}
}

struct producer {
	const char *usage, *tag_model;
	long reports;
	double rate;
	int64_t *pub;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	int fd = open(p->usage, O_WRONLY);
	if (fd < 0)
		die(p->usage);
	int64_t t0 = now_ns();
	for (long i = 0; i < p->reports; i++) {
		int64_t due = t0 + (int64_t)((double)i * 1e9 / p->rate);
		while (now_ns() < due) {
			struct timespec d = {0, 100000};
			nanosleep(&d, NULL);
		}
		char line[128];
		int n = snprintf(line, sizeof line, "model=%s in=%ld out=1", p->tag_model, i);
		p->pub[i] = now_ns();
		if (write(fd, line, (size_t)n) != n)
			die("usage write");
	}
	close(fd);
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	if (argc != 8 && argc != 9) {
		fprintf(stderr, "usage: wsfan PORT TOKEN_FILE USAGE_FILE CLIENTS REPORTS RATE TAG [STALLED]\n");
		return 2;
	}
	int port = atoi(argv[1]);
	char token[128] = "";
	FILE *tf = fopen(argv[2], "r");
	if (!tf || !fgets(token, sizeof token, tf))
		die(argv[2]);
	fclose(tf);
	token[strcspn(token, "\r\n")] = '\0';
	long nclients = atol(argv[4]), reports = atol(argv[5]);
	double rate = atof(argv[6]);
	int stalled = argc == 9 && atoi(argv[8]);
	char tag[128];
	snprintf(tag, sizeof tag, "\"model\":\"%s\"", argv[7]);

	struct client *cl = calloc((size_t)nclients, sizeof *cl);
	int ep = epoll_create1(0);
	for (long k = 0; k < nclients; k++) {
		cl[k].fd = connect_client(port, token);
		cl[k].recv = calloc((size_t)reports, sizeof *cl[k].recv);
		cl[k].last = -1;
		fcntl(cl[k].fd, F_SETFL, O_NONBLOCK);
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cl[k]};
		epoll_ctl(ep, EPOLL_CTL_ADD, cl[k].fd, &e);
	}
	int stalled_fd = stalled ? connect_client(port, token) : -1;
	/* every subscription answered before the first report */
	struct timespec settle = {0, 300000000};
	nanosleep(&settle, NULL);

	struct producer p = {argv[3], argv[7], reports, rate, calloc((size_t)reports, sizeof(int64_t))};
	pthread_t th;
	pthread_create(&th, NULL, produce, &p);
	int64_t deadline = now_ns() + (int64_t)(reports / rate * 1e9) + 30000000000LL;
	long done = 0, closed = 0;
	while (done + closed < nclients && now_ns() < deadline) {
		struct epoll_event ev[64];
		int n = epoll_wait(ep, ev, 64, 100);
		for (int e = 0; e < n; e++) {
			struct client *c = ev[e].data.ptr;
			bool was_done = c->got == reports;
			if (on_readable(c, tag, reports) < 0) {
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				closed++;
			} else if (!was_done && c->got == reports) {
				done++;
			}
		}
	}
	pthread_join(th, NULL);

	size_t nlat = 0;
	int64_t *lat = malloc((size_t)nclients * (size_t)reports * sizeof *lat);
	long missed = 0, dups = 0, disorder = 0;
	for (long k = 0; k < nclients; k++) {
		for (long i = 0; i < reports; i++)
			if (cl[k].recv[i])
				lat[nlat++] = cl[k].recv[i] - p.pub[i];
		missed += reports - cl[k].got;
		dups += cl[k].dups;
		disorder += cl[k].disorder;
	}
	qsort(lat, nlat, sizeof *lat, cmp_i64);
	printf("clients=%ld reports=%ld rate=%.0f deliveries=%zu missed=%ld dups=%ld disorder=%ld "
	       "closed=%ld p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
	       nclients, reports, rate, nlat, missed, dups, disorder, closed,
	       nlat ? lat[nlat / 2] / 1e6 : 0, nlat ? lat[(nlat * 99) / 100] / 1e6 : 0,
	       nlat ? lat[nlat - 1] / 1e6 : 0);
	if (stalled_fd >= 0)
		close(stalled_fd);
	return missed || dups || disorder ? 1 : 0;
}
