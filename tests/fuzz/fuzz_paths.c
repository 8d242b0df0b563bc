/* fuzz_paths: what a client names, as the HTTP API and the WebSocket read
 * take it: a path (up to the first newline) resolved as on the mount and as
 * /api/P, and a channel list (the rest) as ?channels= and subscribe take it.
 * Beyond not crashing: every document and listing that resolves is valid
 * UTF-8 JSON, and a refused channel list names what it refused.
 *   build-fuzz/tests/fuzz/fuzz_paths -max_total_time=60 tests/fuzz/corpus/paths */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nodes.h"

/* One model for every input: reading never changes it. */
static struct orch *shared;
static char shared_dir[] = "/tmp/orchfs-fuzz-paths-XXXXXX";

static void model_close(void)
{
	fuzz_model_close(shared, shared_dir);
	free(shared);
}

static struct orch *model(void)
{
	if (shared)
		return shared;
	shared = xcalloc(1, sizeof *shared);
	fuzz_model_open(shared, shared_dir);
	atexit(model_close);
	return shared;
}

static void render_checked(struct orch *o, const struct node *n, const char *path)
{
	struct buf out = BUF_INIT;
	if (node_type(n) == NODE_DIR) {
		if (node_render_listing(o, n, path, &out) == 0)
			check_json(out.data, out.len);
	} else if ((node_flags(n) & NODE_DOC) && (node_flags(n) & NODE_JSON)) {
		if (node_render_cached(o, n, &out) == 0)
			check_json(out.data, out.len);
	}
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct orch *o = model();
	const char *in = (const char *)data, *nl = memchr(in, '\n', size);
	size_t plen = nl ? (size_t)(nl - in) : size;
	char path[1024];
	if (plen >= sizeof path || memchr(in, '\0', plen))
		return 0;   /* no transport hands on a longer path, nor a NUL in one */
	memcpy(path, in, plen);
	path[plen] = '\0';

	struct node n;
	if (node_resolve(o, path, &n) == 0)
		render_checked(o, &n, path);
	char resolved[600];
	if (node_resolve_api(o, path, &n, resolved, sizeof resolved) == 0) {
		CHECK(utf8_check(resolved, strlen(resolved)) == strlen(resolved));
		render_checked(o, &n, resolved);
	}

	if (nl) {
		char bad[128] = "";
		unsigned mask = events_channel_mask(nl + 1, size - plen - 1, bad, sizeof bad);
		CHECK(mask != 0 || bad[0] != '\0' || size - plen - 1 == 0);
	}
	return 0;
}
