/* test_context: unit tests of the context store (bridge/context.c) and of
 * SHA-256, called directly with no FUSE, on files in a private temp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "json.h"
#include "sha256.h"

#define MAX_BYTES 4096

struct fx {
	char dir[64];
	char mount[128];
	struct events ev;
	struct ctx_store *cs;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/test_context.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->mount, sizeof f->mount, "%s/mnt", f->dir);
	mkdir(f->mount, 0755);
	events_init(&f->ev, 256);
	f->cs = ctx_create(&f->ev, f->mount, MAX_BYTES);
	*state = f;
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	chmod(p, 0700);
	return remove(p);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	ctx_destroy(f->cs);
	events_destroy(&f->ev);
	nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* A path under the fixture dir, in a ring of static buffers big enough that
 * no test outlives the paths it holds. */
static const char *path_of(struct fx *f, const char *name)
{
	static char p[64][256];
	static int i;
	i = (i + 1) % 64;
	snprintf(p[i], sizeof p[i], "%s/%s", f->dir, name);
	return p[i];
}

static const char *write_file(struct fx *f, const char *name, const char *content)
{
	const char *p = path_of(f, name);
	FILE *fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(content, fp);
	fclose(fp);
	return p;
}

/* Sets a file's mtime to a fixed instant: file systems with coarse
 * timestamps would otherwise hide a rewrite made within the same tick. */
static void set_mtime(const char *p, time_t secs)
{
	struct timespec ts[2] = {{secs, 0}, {secs, 0}};
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
}

static int inject(struct fx *f, enum ctx_kind kind, const char *path, const char *text,
		  const char *name, struct buf *res, struct orch_err *err)
{
	struct ctx_inject_req req = {.kind = kind};
	req.path = path ? strdup(path) : NULL;
	req.text = text ? strdup(text) : NULL;
	if (name)
		snprintf(req.name, sizeof req.name, "%s", name);
	memset(err, 0, sizeof *err);
	int rc = ctx_inject(f->cs, &req, res, err);
	free(req.path);
	free(req.text);
	return rc;
}

static cJSON *inject_ok(struct fx *f, enum ctx_kind kind, const char *path, const char *text,
			const char *name)
{
	struct buf res = BUF_INIT;
	struct orch_err err;
	int rc = inject(f, kind, path, text, name, &res, &err);
	if (rc != 0)
		fail_msg("inject failed: %d %s", rc, err.message);
	/* One JSON line, newline-terminated. */
	assert_true(res.len > 0);
	assert_int_equal(res.data[res.len - 1], '\n');
	assert_null(memchr(res.data, '\n', res.len - 1));
	cJSON *o = cJSON_Parse(res.data);
	assert_non_null(o);
	buf_free(&res);
	return o;
}

static void inject_fails(struct fx *f, enum ctx_kind kind, const char *path, const char *text,
			 const char *name, int want)
{
	struct buf res = BUF_INIT;
	struct orch_err err;
	int rc = inject(f, kind, path, text, name, &res, &err);
	if (rc != -want)
		fail_msg("inject %s/%s: want -%d, got %d (%s)", path ? path : "-",
			 name ? name : "-", want, rc, err.message);
	assert_int_equal(err.errnum, want);
	assert_true(err.message[0] != '\0');
	assert_int_equal(res.len, 0);
	buf_free(&res);
}

static const char *jstr(const cJSON *o, const char *key)
{
	return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static double jnum(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

/* state.json as a reader gets it: printed and parsed, so the raw 64-bit
 * numbers json_add_i64 makes come back as numbers. */
static cJSON *state_doc(struct fx *f)
{
	cJSON *raw = ctx_state_json(f->cs);
	char *s = cJSON_PrintUnformatted(raw);
	cJSON *o = cJSON_Parse(s);
	assert_non_null(o);
	cJSON_Delete(raw);
	free(s);
	return o;
}

/* The state.json entry called name, or NULL; *root must be deleted by the caller. */
static const cJSON *state_entry(struct fx *f, cJSON **root, const char *name)
{
	*root = state_doc(f);
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(*root, "entries"))
		if (strcmp(jstr(e, "name"), name) == 0)
			return e;
	return NULL;
}

static const char *status_of(struct fx *f, const char *name)
{
	static char s[16];
	cJSON *root;
	const cJSON *e = state_entry(f, &root, name);
	assert_non_null(e);
	snprintf(s, sizeof s, "%s", jstr(e, "status"));
	cJSON_Delete(root);
	return s;
}

static double cache_counter(struct fx *f, const char *key)
{
	cJSON *root = state_doc(f);
	double v = jnum(cJSON_GetObjectItemCaseSensitive(root, "skeleton_cache"), key);
	cJSON_Delete(root);
	return v;
}

static char *file_content(struct fx *f, const char *name)
{
	struct buf b = BUF_INIT;
	if (ctx_render_file(f->cs, name, &b) < 0)
		return NULL;
	return buf_steal(&b);
}

static const char *last_event(struct fx *f)
{
	assert_true(f->ev.count > 0);
	return f->ev.ring[(f->ev.head + f->ev.count - 1) % f->ev.cap].line;
}

static void collect(void *arg, const char *name)
{
	struct buf *b = arg;
	buf_puts(b, name);
	buf_putc(b, ',');
}

static char *names(struct fx *f)
{
	struct buf b = BUF_INIT;
	ctx_names(f->cs, collect, &b);
	return buf_steal(&b);
}

static bool have_ctags(void)
{
	return system("ctags --version >/dev/null 2>&1") == 0;
}

/* ---- SHA-256 ---- */

static void test_sha256_vectors(void **state)
{
	(void)state;
	char hex[65];
	sha256_hex("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	sha256_hex("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* 56 bytes: the padding spills into a second block. */
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	sha256_hex(two, strlen(two), hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

	size_t n = 1000000;
	char *a = malloc(n);
	memset(a, 'a', n);
	sha256_hex(a, n, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

	/* The same message fed in uneven pieces must not change the digest. */
	static const size_t steps[] = {1, 7, 63, 64, 65, 1000};
	for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
		struct sha256_ctx c;
		uint8_t d[SHA256_DIGEST_LEN];
		sha256_init(&c);
		for (size_t off = 0; off < n; off += steps[s])
			sha256_update(&c, a + off, off + steps[s] > n ? n - off : steps[s]);
		sha256_update(&c, NULL, 0);
		sha256_final(&c, d);
		sha256_digest_hex(d, hex);
		assert_string_equal(hex,
				    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	}
	free(a);
}

/* ---- inject and read back ---- */

static void test_inject_file(void **state)
{
	struct fx *f = *state;
	const char *p = write_file(f, "a.txt", "hello\n");
	uint64_t seq = events_seq(&f->ev);
	cJSON *o = inject_ok(f, CTX_FILE, p, NULL, NULL);
	char sha[65];
	sha256_hex("hello\n", 6, sha);
	assert_string_equal(jstr(o, "name"), "a.txt");
	assert_string_equal(jstr(o, "kind"), "file");
	assert_string_equal(jstr(o, "source"), p);
	assert_string_equal(jstr(o, "sha256"), sha);
	assert_string_equal(jstr(o, "status"), "fresh");
	assert_int_equal((int)jnum(o, "bytes"), 6);
	assert_int_equal((int)jnum(o, "token_estimate"), 2);
	const char *mtime = jstr(o, "mtime");
	assert_non_null(mtime);
	assert_int_equal(strlen(mtime), 24);           /* 2026-11-24T11:20:11.123Z */
	assert_int_equal(mtime[23], 'Z');
	cJSON_Delete(o);

	char *c = file_content(f, "a.txt");
	assert_string_equal(c, "hello\n");
	free(c);
	assert_true(ctx_exists(f->cs, "a.txt"));
	assert_false(ctx_exists(f->cs, "b.txt"));
	struct buf b = BUF_INIT;
	assert_int_equal(ctx_render_file(f->cs, "b.txt", &b), -ENOENT);
	buf_free(&b);

	assert_int_equal(events_seq(&f->ev), seq + 1);
	const char *ev = last_event(f);
	cJSON *e = cJSON_Parse(ev);
	assert_string_equal(jstr(e, "channel"), "context");
	assert_string_equal(jstr(e, "type"), "context.injected");
	cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "data");
	assert_string_equal(jstr(d, "name"), "a.txt");
	assert_string_equal(jstr(d, "kind"), "file");
	assert_string_equal(jstr(d, "source"), p);
	assert_string_equal(jstr(d, "sha256"), sha);
	assert_int_equal((int)jnum(d, "bytes"), 6);
	cJSON_Delete(e);
}

static void test_inject_as_name(void **state)
{
	struct fx *f = *state;
	const char *p = write_file(f, "main.c", "int main(void) { return 0; }\n");
	cJSON *o = inject_ok(f, CTX_FILE, p, NULL, "entry");
	assert_string_equal(jstr(o, "name"), "entry");
	cJSON_Delete(o);
	assert_true(ctx_exists(f->cs, "entry"));
	assert_false(ctx_exists(f->cs, "main.c"));

	/* Relative paths are taken from the working directory. */
	char cwd[512];
	assert_non_null(getcwd(cwd, sizeof cwd));
	assert_int_equal(chdir(f->dir), 0);
	o = inject_ok(f, CTX_FILE, "./main.c", NULL, NULL);
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(jstr(o, "name"), "main.c");
	cJSON_Delete(o);
}

static void test_inject_text_names(void **state)
{
	struct fx *f = *state;
	cJSON *o = inject_ok(f, CTX_TEXT, NULL, "be brief", NULL);
	char sha[65];
	sha256_hex("be brief", 8, sha);
	assert_string_equal(jstr(o, "name"), "text-1");
	assert_string_equal(jstr(o, "kind"), "text");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "source")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "mtime")));
	assert_string_equal(jstr(o, "sha256"), sha);
	assert_string_equal(jstr(o, "status"), "fresh");
	assert_int_equal((int)jnum(o, "bytes"), 8);
	cJSON_Delete(o);

	o = inject_ok(f, CTX_TEXT, NULL, "second", NULL);
	assert_string_equal(jstr(o, "name"), "text-2");
	cJSON_Delete(o);
	o = inject_ok(f, CTX_TEXT, NULL, "styled", "style");
	assert_string_equal(jstr(o, "name"), "style");
	cJSON_Delete(o);
	/* A user-chosen "text-3" is skipped, not replaced, by the counter. */
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "mine", "text-3"));
	o = inject_ok(f, CTX_TEXT, NULL, "third", NULL);
	assert_string_equal(jstr(o, "name"), "text-4");
	cJSON_Delete(o);

	char *n = names(f);
	assert_string_equal(n, "text-1,text-2,style,text-3,text-4,");
	free(n);
	assert_string_equal(status_of(f, "text-1"), "fresh");
	char *c = file_content(f, "style");
	assert_string_equal(c, "styled");
	free(c);
}

static void test_derived_names(void **state)
{
	struct fx *f = *state;
	char longname[80];
	memset(longname, 'x', 65);
	strcpy(longname + 65, ".c");
	const char *p = write_file(f, longname, "x\n");
	inject_fails(f, CTX_FILE, p, NULL, NULL, EINVAL);
	/* Named explicitly, the same file is fine. */
	cJSON_Delete(inject_ok(f, CTX_FILE, p, NULL, "short"));

	p = write_file(f, ".hidden", "x\n");
	inject_fails(f, CTX_FILE, p, NULL, NULL, EINVAL);
	p = write_file(f, "sp ace", "x\n");
	inject_fails(f, CTX_FILE, p, NULL, NULL, EINVAL);

	/* 64 characters is the longest name. */
	char max[80];
	memset(max, 'y', 64);
	max[64] = '\0';
	p = write_file(f, max, "x\n");
	cJSON *o = inject_ok(f, CTX_FILE, p, NULL, NULL);
	assert_string_equal(jstr(o, "name"), max);
	cJSON_Delete(o);

	char *n = names(f);
	assert_int_equal(strncmp(n, "short,yyyy", 10), 0);
	free(n);
}

static void test_replace(void **state)
{
	struct fx *f = *state;
	const char *a = write_file(f, "a.txt", "one\n");
	const char *b = write_file(f, "b.txt", "bee\n");
	cJSON_Delete(inject_ok(f, CTX_FILE, a, NULL, NULL));
	cJSON_Delete(inject_ok(f, CTX_FILE, b, NULL, NULL));
	write_file(f, "a.txt", "one, refreshed\n");
	set_mtime(a, 1000000000);
	assert_string_equal(status_of(f, "a.txt"), "stale");

	cJSON *o = inject_ok(f, CTX_FILE, a, NULL, NULL);
	assert_int_equal((int)jnum(o, "bytes"), 15);
	cJSON_Delete(o);
	/* Replaced in place: same position, one entry. */
	char *n = names(f);
	assert_string_equal(n, "a.txt,b.txt,");
	free(n);
	char *c = file_content(f, "a.txt");
	assert_string_equal(c, "one, refreshed\n");
	free(c);
	assert_string_equal(status_of(f, "a.txt"), "fresh");

	/* A text may replace a file of the same name. */
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "now text", "a.txt"));
	cJSON *root;
	const cJSON *e = state_entry(f, &root, "a.txt");
	assert_string_equal(jstr(e, "kind"), "text");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(e, "source")));
	cJSON_Delete(root);
}

static void test_remove(void **state)
{
	struct fx *f = *state;
	const char *a = write_file(f, "a.txt", "one\n");
	cJSON_Delete(inject_ok(f, CTX_FILE, a, NULL, NULL));
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "t", "keep"));

	struct buf res = BUF_INIT;
	struct orch_err err = {0};
	uint64_t seq = events_seq(&f->ev);
	assert_int_equal(ctx_remove(f->cs, "a.txt", &res, &err), 0);
	assert_string_equal(res.data, "{\"removed\":\"a.txt\"}\n");
	assert_int_equal(events_seq(&f->ev), seq + 1);
	cJSON *e = cJSON_Parse(last_event(f));
	assert_string_equal(jstr(e, "type"), "context.removed");
	assert_string_equal(jstr(cJSON_GetObjectItemCaseSensitive(e, "data"), "name"), "a.txt");
	cJSON_Delete(e);
	assert_false(ctx_exists(f->cs, "a.txt"));

	buf_reset(&res);
	assert_int_equal(ctx_remove(f->cs, "a.txt", &res, &err), -ENOENT);
	assert_int_equal(err.errnum, ENOENT);
	assert_int_equal(res.len, 0);
	assert_int_equal(events_seq(&f->ev), seq + 1);
	buf_free(&res);

	char *n = names(f);
	assert_string_equal(n, "keep,");
	free(n);
}

/* ---- errors change nothing ---- */

static void test_errors_change_nothing(void **state)
{
	struct fx *f = *state;
	const char *ok = write_file(f, "ok.txt", "fine\n");
	cJSON_Delete(inject_ok(f, CTX_FILE, ok, NULL, NULL));
	cJSON *before = ctx_state_json(f->cs);
	char *before_s = cJSON_PrintUnformatted(before);
	uint64_t seq = events_seq(&f->ev);

	inject_fails(f, CTX_FILE, path_of(f, "absent.txt"), NULL, NULL, ENOENT);
	inject_fails(f, CTX_SKELETON, path_of(f, "absent.c"), NULL, NULL, ENOENT);
	inject_fails(f, CTX_FILE, path_of(f, "ok.txt/below"), NULL, "x", ENOENT);
	mkdir(path_of(f, "adir"), 0755);
	inject_fails(f, CTX_FILE, path_of(f, "adir"), NULL, NULL, EINVAL);
	inject_fails(f, CTX_FILE, path_of(f, "adir/"), NULL, "named", EINVAL);
	assert_int_equal(mkfifo(path_of(f, "fifo"), 0644), 0);
	inject_fails(f, CTX_FILE, path_of(f, "fifo"), NULL, NULL, EINVAL);
	inject_fails(f, CTX_FILE, NULL, NULL, "x", EINVAL);
	inject_fails(f, CTX_FILE, "", NULL, "x", EINVAL);
	inject_fails(f, CTX_TEXT, NULL, NULL, "x", EINVAL);
	inject_fails(f, (enum ctx_kind)42, ok, NULL, "x", EINVAL);

	/* Bad explicit names, even with a good source: ok.txt must stay as it is. */
	static const char *bad[] = {".x", "a/b", "a b", "ok.txt\n", "caf\xc3\xa9", ".."};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		inject_fails(f, CTX_FILE, ok, NULL, bad[i], EINVAL);
		inject_fails(f, CTX_TEXT, NULL, "t", bad[i], EINVAL);
	}
	/* A name filling all 65 bytes has no room for its NUL: 65 characters. */
	struct ctx_inject_req full = {.kind = CTX_TEXT, .text = (char[]){"t"}};
	memset(full.name, 'x', sizeof full.name);
	struct buf fres = BUF_INIT;
	struct orch_err ferr;
	assert_int_equal(ctx_inject(f->cs, &full, &fres, &ferr), -EINVAL);
	assert_int_equal(fres.len, 0);

	/* Over max_bytes, both file and text; exactly max_bytes is tested below. */
	char *big = malloc(MAX_BYTES + 2);
	memset(big, 'b', MAX_BYTES + 1);
	big[MAX_BYTES + 1] = '\0';
	const char *bigp = write_file(f, "big.txt", big);
	inject_fails(f, CTX_FILE, bigp, NULL, NULL, EFBIG);
	inject_fails(f, CTX_SKELETON, bigp, NULL, NULL, EFBIG);
	inject_fails(f, CTX_TEXT, NULL, big, NULL, EFBIG);

	/* Inside the mount: directly, through "..", through symlinks to a file
	 * and to the mount directory itself. */
	char inside[256];
	snprintf(inside, sizeof inside, "%s/file.txt", f->mount);
	FILE *fp = fopen(inside, "w");
	fputs("ours\n", fp);
	fclose(fp);
	char via_dots[300];
	snprintf(via_dots, sizeof via_dots, "%s/adir/../mnt/./file.txt", f->dir);
	assert_int_equal(symlink(inside, path_of(f, "link.txt")), 0);
	assert_int_equal(symlink("mnt", path_of(f, "mlink")), 0);
	const char *in_paths[] = {inside, via_dots, path_of(f, "link.txt"),
				  path_of(f, "mlink/file.txt"), f->mount};
	for (size_t i = 0; i < sizeof in_paths / sizeof in_paths[0]; i++) {
		struct buf res = BUF_INIT;
		struct orch_err err;
		assert_int_equal(inject(f, CTX_FILE, in_paths[i], NULL, "in", &res, &err), -EINVAL);
		assert_non_null(strstr(err.message, "inside the orchfs mount"));
		assert_int_equal(inject(f, CTX_SKELETON, in_paths[i], NULL, "in", &res, &err), -EINVAL);
		assert_non_null(strstr(err.message, "inside the orchfs mount"));
		buf_free(&res);
	}

	/* Unreadable; root reads anything, so only checked as a normal user. */
	const char *secret = write_file(f, "secret.txt", "s\n");
	chmod(secret, 0);
	if (geteuid() != 0)
		inject_fails(f, CTX_FILE, secret, NULL, NULL, EACCES);

	assert_int_equal(events_seq(&f->ev), seq);
	cJSON *after = ctx_state_json(f->cs);
	char *after_s = cJSON_PrintUnformatted(after);
	assert_string_equal(before_s, after_s);
	cJSON_Delete(before);
	cJSON_Delete(after);
	free(before_s);
	free(after_s);

	/* The limit itself is allowed. */
	big[MAX_BYTES] = '\0';
	write_file(f, "big.txt", big);
	cJSON_Delete(inject_ok(f, CTX_FILE, bigp, NULL, NULL));
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, big, NULL));
	free(big);
	/* A symlink to a file outside the mount is followed. */
	assert_int_equal(symlink("ok.txt", path_of(f, "ok-link")), 0);
	cJSON *o = inject_ok(f, CTX_FILE, path_of(f, "ok-link"), NULL, NULL);
	assert_string_equal(jstr(o, "name"), "ok-link");
	cJSON_Delete(o);
	char *c = file_content(f, "ok-link");
	assert_string_equal(c, "fine\n");
	free(c);
}

/* ---- freshness ---- */

static void test_stale_missing(void **state)
{
	struct fx *f = *state;
	const char *p = write_file(f, "a.txt", "abcd\n");
	set_mtime(p, 1500000000);
	cJSON_Delete(inject_ok(f, CTX_FILE, p, NULL, NULL));
	assert_string_equal(status_of(f, "a.txt"), "fresh");

	cJSON *root;
	const cJSON *e = state_entry(f, &root, "a.txt");
	assert_string_equal(jstr(e, "mtime"), "2017-07-14T02:40:00.000Z");
	cJSON_Delete(root);

	/* Same size, other bytes, other mtime: stale. */
	write_file(f, "a.txt", "wxyz\n");
	set_mtime(p, 1600000000);
	assert_string_equal(status_of(f, "a.txt"), "stale");
	/* Only touched: the hash shows it is the same content. */
	write_file(f, "a.txt", "abcd\n");
	set_mtime(p, 1700000000);
	assert_string_equal(status_of(f, "a.txt"), "fresh");
	/* Other size. */
	write_file(f, "a.txt", "abcdef\n");
	assert_string_equal(status_of(f, "a.txt"), "stale");
	/* Gone. */
	assert_int_equal(unlink(p), 0);
	assert_string_equal(status_of(f, "a.txt"), "missing");
	/* A directory in its place is not the file either. */
	assert_int_equal(mkdir(p, 0755), 0);
	assert_string_equal(status_of(f, "a.txt"), "missing");
	/* The content stays what workers were fed. */
	char *c = file_content(f, "a.txt");
	assert_string_equal(c, "abcd\n");
	free(c);
}

/* ---- skeletons ---- */

static const char *sample_c =
	"struct foo { int x; char *y; };\n"
	"#define MAX 3\n"
	"static int add(int a, int b) { return a + b; }\n"
	"int main(void) { return add(1, 2); }\n";

static void test_skeleton(void **state)
{
	struct fx *f = *state;
	if (!have_ctags()) {
		/* contrib/install-deps.sh installs it: in CI its absence is a failure */
		const char *ci = getenv("CI");
		if (ci && !strcmp(ci, "true"))
			fail_msg("universal-ctags is missing");
		skip();
	}
	const char *p = write_file(f, "foo.c", sample_c);
	set_mtime(p, 1500000000);
	cJSON *o = inject_ok(f, CTX_SKELETON, p, NULL, NULL);
	assert_string_equal(jstr(o, "name"), "foo.c");
	assert_string_equal(jstr(o, "kind"), "skeleton");
	char sha[65];
	sha256_hex(sample_c, strlen(sample_c), sha);
	assert_string_equal(jstr(o, "sha256"), sha);        /* of the source, not the outline */
	cJSON_Delete(o);

	char *c = file_content(f, "foo.c");
	struct buf want = BUF_INIT;
	buf_printf(&want,
		   "# skeleton of %s (6 definitions)\n"
		   "1 struct foo\n"
		   "1 member foo::x\n"
		   "1 member foo::y\n"
		   "2 macro MAX\n"
		   "3 function add(int a,int b)\n"
		   "4 function main(void)\n",
		   p);
	/* Tags on one line keep ctags' order; compare the set line by line. */
	assert_int_equal(strlen(c), want.len);
	assert_int_equal(strncmp(c, want.data, strcspn(want.data, "\n") + 1), 0);
	const char *lines[] = {"\n1 struct foo\n", "\n1 member foo::x\n", "\n1 member foo::y\n",
			       "\n2 macro MAX\n", "\n3 function add(int a,int b)\n",
			       "\n4 function main(void)\n"};
	for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
		if (!strstr(c, lines[i]))
			fail_msg("outline lacks %s in:\n%s", lines[i] + 1, c);
	assert_non_null(strstr(c, "\n2 macro MAX\n3 function add(int a,int b)\n4 function main(void)\n"));
	free(c);
	buf_free(&want);

	assert_int_equal((int)cache_counter(f, "misses"), 1);
	assert_int_equal((int)cache_counter(f, "hits"), 0);
	assert_int_equal((int)cache_counter(f, "entries"), 1);

	/* Unchanged: from the cache, also under another name. */
	cJSON_Delete(inject_ok(f, CTX_SKELETON, p, NULL, NULL));
	cJSON_Delete(inject_ok(f, CTX_SKELETON, p, NULL, "again"));
	assert_int_equal((int)cache_counter(f, "misses"), 1);
	assert_int_equal((int)cache_counter(f, "hits"), 2);
	c = file_content(f, "again");
	assert_non_null(strstr(c, "3 function add(int a,int b)\n"));
	free(c);

	/* Changed: ctags runs again and the outline follows. */
	write_file(f, "foo.c", "int sub(int a, int b) { return a - b; }\n");
	set_mtime(p, 1600000000);
	assert_string_equal(status_of(f, "foo.c"), "stale");
	cJSON_Delete(inject_ok(f, CTX_SKELETON, p, NULL, NULL));
	assert_int_equal((int)cache_counter(f, "misses"), 2);
	assert_int_equal((int)cache_counter(f, "hits"), 2);
	assert_int_equal((int)cache_counter(f, "entries"), 1);
	assert_string_equal(status_of(f, "foo.c"), "fresh");
	c = file_content(f, "foo.c");
	struct buf want2 = BUF_INIT;
	buf_printf(&want2, "# skeleton of %s (1 definitions)\n1 function sub(int a,int b)\n", p);
	assert_string_equal(c, want2.data);
	free(c);
	buf_free(&want2);

	/* Only touched (same bytes, new mtime): a miss, since mtime is in the key. */
	set_mtime(p, 1700000000);
	cJSON_Delete(inject_ok(f, CTX_SKELETON, p, NULL, NULL));
	assert_int_equal((int)cache_counter(f, "misses"), 3);

	/* A file ctags has no parser for: an empty outline, not an error. */
	const char *t = write_file(f, "notes.unknownext", "just words\n");
	cJSON_Delete(inject_ok(f, CTX_SKELETON, t, NULL, NULL));
	c = file_content(f, "notes.unknownext");
	assert_non_null(strstr(c, "(0 definitions)\n"));
	free(c);
}

static void test_skeleton_without_ctags(void **state)
{
	struct fx *f = *state;
	const char *p = write_file(f, "foo.c", sample_c);
	char *old = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
	mkdir(path_of(f, "emptybin"), 0755);
	setenv("PATH", path_of(f, "emptybin"), 1);
	uint64_t seq = events_seq(&f->ev);
	struct buf res = BUF_INIT;
	struct orch_err err;
	int rc = inject(f, CTX_SKELETON, p, NULL, NULL, &res, &err);
	if (old)
		setenv("PATH", old, 1);
	else
		unsetenv("PATH");
	free(old);
	assert_int_equal(rc, -EIO);
	assert_int_equal(err.errnum, EIO);
	assert_non_null(strstr(err.message, "ctags"));
	assert_int_equal(res.len, 0);
	buf_free(&res);
	assert_false(ctx_exists(f->cs, "foo.c"));
	assert_int_equal(events_seq(&f->ev), seq);
	assert_int_equal((int)cache_counter(f, "misses"), 0);
	assert_int_equal((int)cache_counter(f, "entries"), 0);
}

/* ---- aggregate ---- */

static void test_aggregate_format(void **state)
{
	struct fx *f = *state;
	struct buf out = BUF_INIT;
	ctx_render_aggregate(f->cs, &out);
	assert_int_equal(out.len, 0);

	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "be brief", "style"));
	const char *p = write_file(f, "a.txt", "x\n");
	cJSON_Delete(inject_ok(f, CTX_FILE, p, NULL, NULL));
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "see ```code``` and ````` too\n", "fences"));
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "", "empty"));

	ctx_render_aggregate(f->cs, &out);
	struct buf want = BUF_INIT;
	buf_printf(&want,
		   "# style (text, text)\n\n```\nbe brief\n```\n\n"
		   "# a.txt (file, %s)\n\n```\nx\n```\n\n"
		   "# fences (text, text)\n\n``````\nsee ```code``` and ````` too\n``````\n\n"
		   "# empty (text, text)\n\n```\n```\n\n",
		   p);
	assert_string_equal(out.data, want.data);
	buf_free(&out);
	buf_free(&want);
}

static void test_state_aggregate(void **state)
{
	struct fx *f = *state;
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "12345", "five"));      /* 2 tokens */
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "12345678", "eight"));  /* 2 tokens */
	cJSON_Delete(inject_ok(f, CTX_TEXT, NULL, "1", "one"));           /* 1 token */

	cJSON *root = state_doc(f);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "entries")), 3);
	cJSON *agg = cJSON_GetObjectItemCaseSensitive(root, "aggregate");
	assert_int_equal((int)jnum(agg, "entries"), 3);
	assert_int_equal((int)jnum(agg, "bytes"), 14);
	assert_int_equal((int)jnum(agg, "token_estimate"), 5);
	cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "skeleton_cache");
	assert_int_equal((int)jnum(sc, "entries"), 0);
	assert_int_equal((int)jnum(sc, "hits"), 0);
	assert_int_equal((int)jnum(sc, "misses"), 0);
	/* Every entry carries the same fields. */
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "entries"))
	{
		static const char *keys[] = {"name", "kind", "source", "bytes", "sha256",
					     "mtime", "token_estimate", "status"};
		for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
			assert_non_null(cJSON_GetObjectItemCaseSensitive(e, keys[i]));
		assert_int_equal(cJSON_GetArraySize(e), 8);
	}
	cJSON_Delete(root);

	struct buf res = BUF_INIT;
	struct orch_err err;
	assert_int_equal(ctx_remove(f->cs, "eight", &res, &err), 0);
	buf_free(&res);
	root = state_doc(f);
	agg = cJSON_GetObjectItemCaseSensitive(root, "aggregate");
	assert_int_equal((int)jnum(agg, "entries"), 2);
	assert_int_equal((int)jnum(agg, "bytes"), 6);
	assert_int_equal((int)jnum(agg, "token_estimate"), 3);
	cJSON_Delete(root);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		T(test_inject_file),
		T(test_inject_as_name),
		T(test_inject_text_names),
		T(test_derived_names),
		T(test_replace),
		T(test_remove),
		T(test_errors_change_nothing),
		T(test_stale_missing),
		T(test_skeleton),
		T(test_skeleton_without_ctags),
		T(test_aggregate_format),
		T(test_state_aggregate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
