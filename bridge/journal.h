/* journal: the store's append-only log of commits, STATE_DIR/orchfs.journal.
 * A control write is acknowledged once its commit is a record here (one
 * write(2); with --durable, and synced to the disk); the store thread copies
 * the records into SQLite behind, and a restart replays what it had not copied.
 * Each record carries the journal's generation and a CRC-32C, so replay stops
 * at a torn tail or at what a reset left behind:
 *   file   = "orchfsj1" u64 generation, then records
 *   record = u32 magic, u32 length, u64 generation, u32 crc, payload
 * (host byte order: the file never leaves its machine). */
#ifndef ORCHFS_JOURNAL_H
#define ORCHFS_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orch.h"

struct journal;

/* Opens (creating) path, mode 0600. durable: journal_sync makes what was
 * appended durable (fdatasync), and the file grows ahead in zeroed chunks so
 * that a sync writes data, not the file's size as well. */
int journal_open(const char *path, bool durable, struct journal **out, struct orch_err *err);
void journal_close(struct journal *j);
/* Calls fn for each whole record of the current generation, oldest first,
 * stopping at the first torn, corrupt or stale one, or when fn fails (its
 * value is returned). Appends go after the last whole record. */
int journal_replay(struct journal *j, int (*fn)(void *arg, const char *data, size_t len),
		   void *arg);
/* Writes one record of len bytes in one call: 0 or -errno (then nothing of
 * it counts, and the next append writes over what it left). */
int journal_append(struct journal *j, const void *data, size_t len);
/* durable: every record appended before the call is on the disk once it
 * returns 0 (-errno else); else 0 at once. Safe beside an append. */
int journal_sync(struct journal *j);
/* Starts a new generation: everything in the journal is stored elsewhere now
 * (durably, if the journal is). 0 or -errno. */
int journal_reset(struct journal *j);
/* Bytes of records since the last reset. */
uint64_t journal_bytes(const struct journal *j);

#endif
