/* journal: the store's append-only log of commits (see journal.h). */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"

#define JOURNAL_MAGIC "orchfsj1"
#define JOURNAL_HEADER 16                /* magic, generation */
#define RECORD_MAGIC 0x4f524a31u
#define RECORD_HEADER 20                 /* magic, length, generation, crc */
#define RECORD_MAX (256u << 20)          /* a record is one commit group */
#define JOURNAL_GROW (1u << 20)          /* durable: zeroed ahead this much at a time */

struct journal {
	int fd;
	bool durable;
	uint64_t generation;
	uint64_t end;          /* where the next record goes */
	uint64_t allocated;    /* durable: the file's length, zeroed past end */
	uint32_t crc_table[256];
};

static void crc_init(uint32_t table[256])
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;   /* Castagnoli, reflected */
		table[i] = c;
	}
}

static uint32_t crc_update(const uint32_t table[256], uint32_t crc, const void *data, size_t len)
{
	const unsigned char *p = data;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* Over the length, the generation and the payload. */
static uint32_t record_crc(const struct journal *j, const unsigned char *hdr, const void *data,
			   size_t len)
{
	uint32_t crc = crc_update(j->crc_table, 0xffffffffu, hdr + 4, 12);
	return ~crc_update(j->crc_table, crc, data, len);
}

static void record_header(const struct journal *j, unsigned char hdr[RECORD_HEADER],
			  const void *data, uint32_t len)
{
	uint32_t magic = RECORD_MAGIC;
	memcpy(hdr, &magic, 4);
	memcpy(hdr + 4, &len, 4);
	memcpy(hdr + 8, &j->generation, 8);
	uint32_t crc = record_crc(j, hdr, data, len);
	memcpy(hdr + 16, &crc, 4);
}

static int write_all(int fd, const void *data, size_t len, uint64_t at)
{
	const char *p = data;
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ENOSPC;
		p += n;
		len -= (size_t)n;
		at += (uint64_t)n;
	}
	return 0;
}

static int write_header(struct journal *j)
{
	unsigned char hdr[JOURNAL_HEADER];
	memcpy(hdr, JOURNAL_MAGIC, 8);
	memcpy(hdr + 8, &j->generation, 8);
	return write_all(j->fd, hdr, sizeof hdr, 0);
}

int journal_open(const char *path, bool durable, struct journal **out, struct orch_err *err)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	struct stat st;
	if (fd < 0 || fchmod(fd, 0600) < 0 || fstat(fd, &st) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return err_set(err, EIO, "cannot open %s: %s", path, strerror(e));
	}
	struct journal *j = xcalloc(1, sizeof *j);
	j->fd = fd;
	j->durable = durable;
	j->allocated = (uint64_t)st.st_size;
	crc_init(j->crc_table);
	unsigned char hdr[JOURNAL_HEADER];
	if (st.st_size < JOURNAL_HEADER) {
		/* new, or its first header never reached the disk: nothing was in it */
		j->generation = 1;
		j->allocated = JOURNAL_HEADER;
		int rc = write_header(j);
		if (!rc && durable && fdatasync(fd) < 0)
			rc = -errno;
		if (rc) {
			journal_close(j);
			return err_set(err, EIO, "cannot write %s: %s", path, strerror(-rc));
		}
	} else if (pread(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr ||
		   memcmp(hdr, JOURNAL_MAGIC, 8) != 0) {
		journal_close(j);
		return err_set(err, EIO, "%s is not an orchfs journal; move it away to start afresh",
			       path);
	} else {
		memcpy(&j->generation, hdr + 8, 8);
	}
	j->end = JOURNAL_HEADER;
	*out = j;
	return 0;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	close(j->fd);
	free(j);
}

int journal_replay(struct journal *j, int (*fn)(void *arg, const char *data, size_t len),
		   void *arg)
{
	uint64_t at = JOURNAL_HEADER;
	char *data = NULL;
	size_t cap = 0;
	int rc = 0;
	for (;;) {
		unsigned char hdr[RECORD_HEADER];
		uint32_t magic, len, crc;
		uint64_t generation;
		if (pread(j->fd, hdr, sizeof hdr, (off_t)at) != (ssize_t)sizeof hdr)
			break;
		memcpy(&magic, hdr, 4);
		memcpy(&len, hdr + 4, 4);
		memcpy(&generation, hdr + 8, 8);
		memcpy(&crc, hdr + 16, 4);
		if (magic != RECORD_MAGIC || generation != j->generation || len > RECORD_MAX)
			break;
		data = xgrow(data, &cap, len ? len : 1, 1);
		if (pread(j->fd, data, len, (off_t)(at + RECORD_HEADER)) != (ssize_t)len ||
		    record_crc(j, hdr, data, len) != crc)
			break;
		if ((rc = fn(arg, data, len)))
			break;
		at += RECORD_HEADER + len;
	}
	free(data);
	j->end = at;
	return rc;
}

/* durable: zeroes the file ahead of end, and syncs that, so that an
 * append's sync writes its data, and the file's size only once per
 * JOURNAL_GROW */
static int grow(struct journal *j, uint64_t need)
{
	static const char zeros[65536];
	uint64_t target = j->allocated;
	while (target < need)
		target += JOURNAL_GROW;
	while (j->allocated < target) {
		size_t n = target - j->allocated < sizeof zeros ? (size_t)(target - j->allocated)
							       : sizeof zeros;
		int rc = write_all(j->fd, zeros, n, j->allocated);
		if (rc)
			return rc;
		j->allocated += n;
	}
	return fdatasync(j->fd) < 0 ? -errno : 0;
}

int journal_sync(struct journal *j)
{
	return j->durable && fdatasync(j->fd) < 0 ? -errno : 0;
}

int journal_append(struct journal *j, const void *data, size_t len)
{
	if (len > RECORD_MAX)
		return -EFBIG;
	unsigned char hdr[RECORD_HEADER];
	record_header(j, hdr, data, (uint32_t)len);
	uint64_t need = j->end + RECORD_HEADER + len;
	int rc = j->durable && need > j->allocated ? grow(j, need) : 0;
	struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)data, len}};
	size_t total = sizeof hdr + len;
	while (!rc) {
		ssize_t n = pwritev(j->fd, iov, 2, (off_t)j->end);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = -errno;
		else if ((size_t)n < total)
			rc = -ENOSPC;   /* the limit was reached partway: the rest would fail */
		break;
	}
	if (!rc)
		j->end = need;
	return rc;
}

int journal_reset(struct journal *j)
{
	j->generation++;
	int rc = write_header(j);
	if (rc) {
		j->generation--;
		return rc;
	}
	/* written, synced or not: from now on records carry the new generation */
	j->end = JOURNAL_HEADER;
	return j->durable && fdatasync(j->fd) < 0 ? -errno : 0;
}

uint64_t journal_bytes(const struct journal *j)
{
	return j->end - JOURNAL_HEADER;
}
