/* logpool: worker log files made ahead of need (see logpool.h). */
#include "logpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "buf.h"

/* How many files are made ahead of the last id taken: more than a burst of
 * starts of one scheduler pass usually needs, few enough to be cheap. */
#define LOGPOOL_AHEAD 32

struct made {
	int id, fd;
};

struct log_pool {
	pthread_mutex_t lock;
	pthread_cond_t wanted;     /* the thread: room to make more, or stop */
	pthread_cond_t made;       /* a take waits for the file being made */
	pthread_t thread;
	char *dir;
	int next;                  /* the next id to make */
	int making;                /* the id being made; 0: none */
	int taken;                 /* the highest id taken */
	struct made files[LOGPOOL_AHEAD];
	int nfiles;
	bool started, stop;
};

static int log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

static void log_path(const struct log_pool *p, int id, char *out, size_t size)
{
	snprintf(out, size, "%s/%d.log", p->dir, id);
}

static void *pool_main(void *arg)
{
	struct log_pool *p = arg;
	pthread_setname_np(pthread_self(), "orchfs-logs");
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (p->nfiles == LOGPOOL_AHEAD || p->next > p->taken + LOGPOOL_AHEAD) {
			pthread_cond_wait(&p->wanted, &p->lock);
			continue;
		}
		int id = p->next++;
		p->making = id;
		pthread_mutex_unlock(&p->lock);
		char path[4096];
		log_path(p, id, path, sizeof path);
		int fd = log_open(path);
		pthread_mutex_lock(&p->lock);
		p->making = 0;
		if (fd >= 0)
			p->files[p->nfiles++] = (struct made){id, fd};
		pthread_cond_broadcast(&p->made);
		if (fd < 0 && !p->stop)   /* a full disk, say: the takes find out for themselves */
			pthread_cond_wait(&p->wanted, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

struct log_pool *logpool_start(const char *dir, int first_id)
{
	struct log_pool *p = xcalloc(1, sizeof *p);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wanted, NULL);
	pthread_cond_init(&p->made, NULL);
	p->dir = xstrdup(dir);
	p->next = first_id;
	p->taken = first_id - 1;
	p->started = pthread_create(&p->thread, NULL, pool_main, p) == 0;
	if (!p->started) {
		logpool_stop(p);
		return NULL;
	}
	return p;
}

void logpool_stop(struct log_pool *p)
{
	if (!p)
		return;
	if (p->started) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->wanted);
		pthread_mutex_unlock(&p->lock);
		pthread_join(p->thread, NULL);
	}
	for (int i = 0; i < p->nfiles; i++) {
		char path[4096];
		log_path(p, p->files[i].id, path, sizeof path);
		close(p->files[i].fd);
		unlink(path);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wanted);
	pthread_cond_destroy(&p->made);
	free(p->dir);
	free(p);
}

int logpool_take(struct log_pool *p, int id, const char *path)
{
	if (!p)
		return log_open(path);
	int fd = -1;
	pthread_mutex_lock(&p->lock);
	while (p->making == id)
		pthread_cond_wait(&p->made, &p->lock);
	for (int i = 0; i < p->nfiles; i++)
		if (p->files[i].id == id) {
			fd = p->files[i].fd;
			p->files[i] = p->files[--p->nfiles];
			break;
		}
	if (id > p->taken)
		p->taken = id;
	if (p->next <= id)
		p->next = id + 1;   /* made here, below: the pool must not truncate it after */
	pthread_cond_signal(&p->wanted);
	pthread_mutex_unlock(&p->lock);
	return fd >= 0 ? fd : log_open(path);
}
