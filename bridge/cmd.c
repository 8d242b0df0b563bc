/* cmd: the parser of every control write, line form and JSON alike. It only
 * validates and copies; the model is never touched, so a parse may fail at any
 * point and the caller has nothing to undo. Messages are written for the
 * person at the shell: they name the field, the line and the rule broken. */
#include "cmd.h"
#include "pricing.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ID_RULE "ids are [a-z0-9][a-z0-9_-]{0,63}"
#define NAME_RULE "names are [A-Za-z0-9._-]{1,64}, not starting with \".\""
#define SHOW 80                     /* bytes of a bad token quoted back */
#define MAX_TOKENS 8                /* more than any line form takes */
#define SIG_MAX 64
#define GRACE_MAX 3600
#define TIMEOUT_MAX (86400 * 365)
#define RETRIES_MAX 1000
#define USD_INT_MAX 1000000000000LL /* same ceiling as json_usd */

struct tok {
	const char *p;
	size_t n;
};

/* ---- input ---- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Separators of the line forms; '\r' too, so CRLF from HTTP clients parses. */
static bool is_sep(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

static int show_len(size_t n)
{
	return n > SHOW ? SHOW : (int)n;
}

/* NUL bytes would silently cut the C strings we hand on short, so they are
 * refused before anything else looks at the bytes. */
static int input_prepare(const char *in, size_t *len, struct orch_err *err)
{
	if (*len == 0)
		return 0;
	if (memchr(in, '\0', *len))
		return err_set(err, EINVAL, "the input contains a NUL byte");
	size_t bad = utf8_check(in, *len);
	if (bad < *len)
		return err_set(err, EINVAL, "the input is not UTF-8 (byte %zu)", bad + 1);
	if (in[*len - 1] == '\n')
		(*len)--;
	return 0;
}

static void trim(const char **p, size_t *n)
{
	while (*n && is_blank(**p)) {
		(*p)++;
		(*n)--;
	}
	while (*n && is_blank((*p)[*n - 1]))
		(*n)--;
}

static char first_byte(const char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!is_blank(in[i]))
			return in[i];
	return '\0';
}

/* Returns how many tokens there are; only the first max are stored. */
static size_t tokenize(const char *p, size_t n, struct tok *t, size_t max)
{
	size_t count = 0, i = 0;
	while (i < n) {
		while (i < n && is_sep(p[i]))
			i++;
		if (i == n)
			break;
		size_t start = i;
		while (i < n && !is_sep(p[i]))
			i++;
		if (count < max)
			t[count] = (struct tok){p + start, i - start};
		count++;
	}
	return count;
}

static bool tok_is(struct tok t, const char *s)
{
	return strlen(s) == t.n && memcmp(t.p, s, t.n) == 0;
}

/* Puts prefix in front of the message already in err, keeping its errno. */
static int err_prefix(struct orch_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int err_prefix(struct orch_err *err, const char *fmt, ...)
{
	char pre[128];
	va_list ap;
	va_start(ap, fmt);
	int pn = vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	if (pn < 0)
		pn = 0;
	size_t plen = (size_t)pn < sizeof pre ? (size_t)pn : sizeof pre - 1;
	size_t cap = sizeof err->message - 1;
	size_t mlen = strlen(err->message);
	if (plen + mlen > cap)
		mlen = cap - plen;
	memmove(err->message + plen, err->message, mlen);
	memcpy(err->message, pre, plen);
	err->message[plen + mlen] = '\0';
	return -err->errnum;
}

/* ---- small validators ---- */

static int copy_id(const char *p, size_t n, const char *what, char out[ID_MAX + 1],
		   struct orch_err *err)
{
	char tmp[ID_MAX + 1];
	if (n == 0 || n > ID_MAX)
		goto bad;
	memcpy(tmp, p, n);
	tmp[n] = '\0';
	if (!id_valid(tmp))
		goto bad;
	memcpy(out, tmp, n + 1);
	return 0;
bad:
	return err_set(err, EINVAL, "bad %s id \"%.*s%s\": " ID_RULE, what, show_len(n), p,
		       n > SHOW ? "..." : "");
}

static bool name_valid(const char *p, size_t n)
{
	if (n == 0 || n > 64 || p[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static int copy_name(const char *p, size_t n, char out[ID_MAX + 1], struct orch_err *err)
{
	if (!name_valid(p, n))
		return err_set(err, EINVAL, "bad name \"%.*s%s\": " NAME_RULE, show_len(n), p,
			       n > SHOW ? "..." : "");
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

/* Models key the price table, and the line form splits on spaces. */
static int check_model(const char *p, size_t n, struct orch_err *err)
{
	bool ok = n > 0 && n <= MODEL_MAX;
	for (size_t i = 0; ok && i < n; i++)
		ok = p[i] > ' ' && p[i] <= '~';
	if (!ok)
		return err_set(err, EINVAL,
			       "bad model \"%.*s%s\": a model is 1 to %d printable characters without spaces",
			       show_len(n), p, n > SHOW ? "..." : "", MODEL_MAX);
	return 0;
}

static bool env_name_valid(const char *s)
{
	if (strlen(s) > ENV_NAME_MAX)
		return false;
	if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (const char *c = s + 1; *c; c++)
		if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= '0' && *c <= '9') || *c == '_'))
			return false;
	return true;
}

/* Unsigned decimal digits only, at most max; false on anything else. */
static bool parse_u64(const char *p, size_t n, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (max - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/* ---- JSON ---- */

static int json_parse(const char *in, size_t len, cJSON **out, struct orch_err *err)
{
	size_t nul = json_nul_escape(in, len);
	if (nul < len)
		return err_set(err, EINVAL, "a string holds \\u0000 (byte %zu): NUL is refused, as in "
			       "the line forms", nul + 1);
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(in, len, &end, false);
	size_t at;
	bool trailing = false;
	if (!root) {
		at = end && end >= in && end <= in + len ? (size_t)(end - in) : 0;
		goto bad;
	}
	for (const char *p = end; p < in + len; p++)
		if (!is_blank(*p)) {
			cJSON_Delete(root);
			at = (size_t)(p - in);
			trailing = true;
			goto bad;
		}
	*out = root;
	return 0;
bad:;
	/* line and column, because people write these by hand */
	size_t line = 1, col = 1;
	for (size_t i = 0; i < at; i++) {
		if (in[i] == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	return err_set(err, EINVAL, "bad JSON at line %zu, column %zu%s", line, col,
		       trailing ? ": unexpected text after the document" : "");
}

/* Strict objects: an unknown or repeated key fails, so that a typo such as
 * "retires" is caught instead of silently meaning the default. */
static int json_check_keys(const cJSON *obj, const char *const *keys, struct orch_err *err)
{
	for (const cJSON *c = obj->child; c; c = c->next) {
		const char *k = c->string ? c->string : "";
		bool known = false;
		for (size_t i = 0; keys[i] && !known; i++)
			known = strcmp(keys[i], k) == 0;
		if (!known)
			return err_set(err, EINVAL, "unknown field \"%.*s\"", show_len(strlen(k)), k);
		for (const cJSON *d = obj->child; d != c; d = d->next)
			if (d->string && strcmp(d->string, k) == 0)
				return err_set(err, EINVAL, "field \"%s\" given twice", k);
	}
	return 0;
}

/* Absent and null mean the same for optional members. */
static const cJSON *member(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsNull(v) ? NULL : v;
}

static int get_string(const cJSON *obj, const char *name, bool required, char **out,
		      struct orch_err *err)
{
	const cJSON *v = member(obj, name);
	if (!v)
		return required ? err_set(err, EINVAL, "\"%s\" is required", name) : 0;
	if (!cJSON_IsString(v))
		return err_set(err, EINVAL, "\"%s\" must be a string", name);
	*out = xstrdup(v->valuestring);
	return 0;
}

/* exec(2) takes no argument longer than this (Linux's MAX_ARG_STRLEN): a
 * longer command could never start, so it is refused as it is written. */
#define COMMAND_MAX (128 * 1024 - 1)

static int check_command(const char *command, size_t len, struct orch_err *err)
{
	/* only blanks would run /bin/sh -c "" and "succeed" at nothing */
	if (first_byte(command, len) == '\0')
		return err_set(err, EINVAL, "\"command\" must not be empty");
	if (len > COMMAND_MAX)
		return err_set(err, EINVAL, "a command is at most %d bytes (exec's limit), got %zu",
			       COMMAND_MAX, len);
	return 0;
}

static int get_command(const cJSON *obj, char **out, struct orch_err *err)
{
	int rc = get_string(obj, "command", true, out, err);
	return rc ? rc : check_command(*out, strlen(*out), err);
}

static int get_id(const cJSON *obj, const char *name, const char *what, bool required,
		  char out[ID_MAX + 1], struct orch_err *err)
{
	const cJSON *v = member(obj, name);
	if (!v)
		return required ? err_set(err, EINVAL, "\"%s\" is required", name) : 0;
	if (!cJSON_IsString(v))
		return err_set(err, EINVAL, "\"%s\" must be a %s id (a string)", name, what);
	return copy_id(v->valuestring, strlen(v->valuestring), what, out, err);
}

static int get_int(const cJSON *obj, const char *name, int64_t min, int64_t max, int64_t *out,
		   struct orch_err *err)
{
	const cJSON *v = member(obj, name);
	if (!v)
		return 0;
	if (!json_int(v, min, max, out))
		return err_set(err, EINVAL, "\"%s\" must be a whole number %lld..%lld", name,
			       (long long)min, (long long)max);
	return 0;
}

/* The daemon runs from "/", so a relative cwd would never mean what was meant. */
static int get_cwd(const cJSON *obj, char **out, struct orch_err *err)
{
	int rc = get_string(obj, "cwd", false, out, err);
	if (rc || !*out)
		return rc;
	if ((*out)[0] != '/')
		return err_set(err, EINVAL, "\"cwd\" must be an absolute path");
	return 0;
}

static int get_model(const cJSON *obj, char **out, struct orch_err *err)
{
	int rc = get_string(obj, "model", false, out, err);
	if (rc || !*out)
		return rc;
	return check_model(*out, strlen(*out), err);
}

/* Compares "KEY=VALUE" strings by KEY alone ('=' never occurs in a key). */
static int cmp_env_key(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	while (*x == *y && *x != '=') {
		x++;
		y++;
	}
	return (*x == '=' ? 0 : (unsigned char)*x) - (*y == '=' ? 0 : (unsigned char)*y);
}

/* Sorting, not pairwise comparison: a 1 MiB write can hold 100k keys. */
static int check_env_unique(char *const *env, size_t n, struct orch_err *err)
{
	if (n < 2)
		return 0;
	char **v = xcalloc(n, sizeof *v);
	memcpy(v, env, n * sizeof *v);
	qsort(v, n, sizeof *v, cmp_env_key);
	int rc = 0;
	for (size_t i = 1; i < n && !rc; i++)
		if (cmp_env_key(&v[i - 1], &v[i]) == 0)
			rc = err_set(err, EINVAL, "\"env\" gives \"%.*s\" twice",
				     (int)strcspn(v[i], "="), v[i]);
	free(v);
	return rc;
}

static int get_env(const cJSON *obj, char ***env, size_t *nenv, struct orch_err *err)
{
	const cJSON *v = member(obj, "env");
	if (!v)
		return 0;
	if (!cJSON_IsObject(v))
		return err_set(err, EINVAL, "\"env\" must be an object of strings");
	size_t n = (size_t)cJSON_GetArraySize(v);
	if (n == 0)
		return 0;
	if (n > ENV_VARS_MAX)
		return err_set(err, EINVAL, "\"env\" holds %zu names; at most %d", n, ENV_VARS_MAX);
	*env = xcalloc(n, sizeof **env);
	for (const cJSON *c = v->child; c; c = c->next) {
		const char *k = c->string ? c->string : "";
		if (!env_name_valid(k))
			return err_set(err, EINVAL,
				       "bad \"env\" name \"%.*s\": names are [A-Za-z_][A-Za-z0-9_]{0,127}",
				       show_len(strlen(k)), k);
		if (!cJSON_IsString(c))
			return err_set(err, EINVAL, "\"env\" value of \"%s\" must be a string", k);
		struct buf b = BUF_INIT;
		buf_printf(&b, "%s=%s", k, c->valuestring);
		(*env)[(*nenv)++] = buf_steal(&b);
	}
	return check_env_unique(*env, *nenv, err);
}

/* ---- tasks ---- */

typedef char dep_id[ID_MAX + 1];

/* By id, then by position, so the first of equal ids sorts first. */
static int cmp_dep(const void *a, const void *b)
{
	const dep_id *x = *(const dep_id *const *)a, *y = *(const dep_id *const *)b;
	int c = strcmp(*x, *y);
	return c ? c : (x > y) - (x < y);
}

/* A repeated dep adds nothing, and the DAG should see one edge. Keeps the
 * first of each and the order given; sorts, since deps may be many. */
static void dedupe_deps(struct task_spec *s)
{
	size_t n = s->ndeps;
	if (n < 2)
		return;
	dep_id **v = xcalloc(n, sizeof *v);
	bool *drop = xcalloc(n, sizeof *drop);
	for (size_t i = 0; i < n; i++)
		v[i] = &s->deps[i];
	qsort(v, n, sizeof *v, cmp_dep);
	for (size_t i = 1; i < n; i++)
		if (strcmp(*v[i - 1], *v[i]) == 0)
			drop[v[i] - s->deps] = true;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (!drop[i]) {
			if (k != i)
				memcpy(s->deps[k], s->deps[i], sizeof s->deps[k]);
			k++;
		}
	s->ndeps = k;
	free(drop);
	free(v);
}

static int get_deps(const cJSON *obj, struct task_spec *s, struct orch_err *err)
{
	const cJSON *v = member(obj, "deps");
	if (!v)
		return 0;
	if (!cJSON_IsArray(v))
		return err_set(err, EINVAL, "\"deps\" must be an array of task ids");
	size_t n = (size_t)cJSON_GetArraySize(v);
	if (n == 0)
		return 0;
	s->deps = xcalloc(n, sizeof *s->deps);
	for (const cJSON *c = v->child; c; c = c->next) {
		if (!cJSON_IsString(c))
			return err_set(err, EINVAL, "\"deps\" must be an array of task ids");
		dep_id *d = &s->deps[s->ndeps];
		int rc = copy_id(c->valuestring, strlen(c->valuestring), "task", *d, err);
		if (rc)
			return rc;
		if (strcmp(*d, s->id) == 0)
			return err_set(err, ELOOP, "task %s depends on itself", s->id);
		s->ndeps++;
	}
	dedupe_deps(s);
	return 0;
}

static int get_runner(const cJSON *obj, enum runner_kind *out, struct orch_err *err)
{
	const cJSON *v = member(obj, "runner");
	if (!v)
		return 0;
	if (cJSON_IsString(v) && !strcmp(v->valuestring, "local"))
		*out = RUNNER_LOCAL;
	else if (cJSON_IsString(v) && !strcmp(v->valuestring, "slurm"))
		*out = RUNNER_SLURM;
	else
		return err_set(err, EINVAL, "\"runner\" must be \"local\" or \"slurm\"");
	return 0;
}

/* s is made only of bytes in allowed, 1..max of them */
static bool made_of(const char *s, const char *allowed, size_t max)
{
	size_t n = strlen(s);
	return n && n <= max && strspn(s, allowed) == n;
}

#define SLURM_NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,-"
#define SLURM_EXTRA_MAX 32

/* sbatch options orchfs gives itself: an "extra" may not change them */
static bool slurm_option_reserved(const char *opt)
{
	static const char *const ours[] = {"parsable", "job-name", "output", "error", "open-mode",
					   "chdir", "export", "wrap", "input", "export-file",
					   "get-user-env", "test-only", "help", "usage", "version"};
	size_t n = strcspn(opt + 2, "=");
	for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
		if (strlen(ours[i]) == n && !strncmp(opt + 2, ours[i], n))
			return true;
	return false;
}

/* One of "slurm"'s named options as --flag=value. */
struct slurm_named {
	const char *key, *flag;
	const char *allowed;   /* the bytes of a string value; NULL: a number only */
	bool number;           /* a whole number 1..1000000 too */
	const char *what;      /* what it must be, for the error */
};

static int slurm_option(const cJSON *obj, const struct slurm_named *o, struct buf *opt,
			struct orch_err *err)
{
	const cJSON *v = member(obj, o->key);
	if (!v)
		return 0;
	int64_t n;
	if (o->number && json_int(v, 1, 1000000, &n)) {
		buf_printf(opt, "--%s=%lld", o->flag, (long long)n);
		return 0;
	}
	if (!o->allowed || !cJSON_IsString(v) || !made_of(v->valuestring, o->allowed, 128))
		return err_set(err, EINVAL, "\"slurm\": \"%s\" must be %s", o->key, o->what);
	buf_printf(opt, "--%s=%s", o->flag, v->valuestring);
	return 0;
}

static const char *const slurm_keys[] = {"partition", "time", "cpus", "mem", "gres", "account",
					 "qos", "extra", NULL};

/* "slurm": {"partition","time","cpus","mem","gres","account","qos","extra":[...]}
 * as sbatch's options; each value is one argv entry of sbatch's, never a
 * shell's, and what orchfs sets itself (output, job name, ...) cannot be. */
static int get_slurm(const cJSON *obj, char ***opts, size_t *nopts, struct orch_err *err)
{
	const cJSON *v = member(obj, "slurm");
	if (!v)
		return 0;
	if (!cJSON_IsObject(v))
		return err_set(err, EINVAL, "\"slurm\" must be an object of sbatch options");
	int rc = json_check_keys(v, slurm_keys, err);
	if (rc)
		return err_prefix(err, "\"slurm\": ");
#define NAMES "a name of letters, digits and _.,- (at most 128)"
	static const struct slurm_named named[] = {
		{"partition", "partition", SLURM_NAME_CHARS, false, NAMES},
		{"time", "time", "0123456789:-", true, "minutes, or Slurm's [D-]HH:MM:SS"},
		{"cpus", "cpus-per-task", NULL, true, "a whole number 1..1000000"},
		{"mem", "mem", "0123456789KMGTkmgt", true, "megabytes, or a size such as \"4G\""},
		{"gres", "gres", SLURM_NAME_CHARS ":=", false, "a gres list such as \"gpu:1\""},
		{"account", "account", SLURM_NAME_CHARS, false, NAMES},
		{"qos", "qos", SLURM_NAME_CHARS, false, NAMES},
	};
#undef NAMES
	const cJSON *extra = member(v, "extra");
	size_t nextra = extra ? (size_t)cJSON_GetArraySize(extra) : 0;
	if (extra && (!cJSON_IsArray(extra) || nextra > SLURM_EXTRA_MAX))
		return err_set(err, EINVAL, "\"slurm\": \"extra\" must be an array of at most %d "
			       "options", SLURM_EXTRA_MAX);
	*opts = xcalloc(sizeof named / sizeof *named + nextra, sizeof **opts);
	for (size_t i = 0; i < sizeof named / sizeof *named; i++) {
		struct buf opt = BUF_INIT;
		rc = slurm_option(v, &named[i], &opt, err);
		if (rc || !opt.len) {
			buf_free(&opt);
			if (rc)
				return rc;
			continue;
		}
		(*opts)[(*nopts)++] = buf_steal(&opt);
	}
	for (const cJSON *c = extra ? extra->child : NULL; c; c = c->next) {
		const char *s = cJSON_IsString(c) ? c->valuestring : NULL;
		if (!s || strncmp(s, "--", 2) || !made_of(s + 2, SLURM_NAME_CHARS ":=/@+%", 256))
			return err_set(err, EINVAL, "\"slurm\": each \"extra\" is one sbatch option "
				       "--name[=value] of [A-Za-z0-9_.,:=/@+%%-], at most 256 bytes");
		if (slurm_option_reserved(s))
			return err_set(err, EINVAL, "\"slurm\": \"extra\" cannot set %.*s: orchfs sets "
				       "it itself", (int)strcspn(s, "="), s);
		(*opts)[(*nopts)++] = xstrdup(s);
	}
	return 0;
}

static const char *const task_keys[] = {
	"id", "command", "deps", "title", "cwd", "env", "retries", "timeout_s", "model", "priority",
	"runner", "slurm", NULL,
};

static int parse_task_body(const cJSON *obj, struct task_spec *s, struct orch_err *err)
{
	int64_t v;
	int rc;
	if (!cJSON_IsObject(obj))
		return err_set(err, EINVAL, "a task must be a JSON object");
	/* the id first, so later messages can say which task they are about */
	if ((rc = get_id(obj, "id", "task", true, s->id, err)) ||
	    (rc = json_check_keys(obj, task_keys, err)) ||
	    (rc = get_command(obj, &s->command, err)) ||
	    (rc = get_string(obj, "title", false, &s->title, err)) ||
	    (rc = get_cwd(obj, &s->cwd, err)) ||
	    (rc = get_model(obj, &s->model, err)) ||
	    (rc = get_env(obj, &s->env, &s->nenv, err)) ||
	    (rc = get_deps(obj, s, err)) ||
	    (rc = get_runner(obj, &s->runner, err)) ||
	    (rc = get_slurm(obj, &s->slurm, &s->nslurm, err)))
		return rc;
	/* Slurm's options say where it runs, unless "runner" says otherwise */
	if (member(obj, "slurm") && s->runner == RUNNER_LOCAL)
		return err_set(err, EINVAL, "\"slurm\" options are for \"runner\": \"slurm\"");
	if (member(obj, "slurm"))
		s->runner = RUNNER_SLURM;
	v = 0;
	if ((rc = get_int(obj, "retries", 0, RETRIES_MAX, &v, err)))
		return rc;
	s->retries = (int)v;
	v = 0;
	if ((rc = get_int(obj, "timeout_s", 0, TIMEOUT_MAX, &v, err)))
		return rc;
	s->timeout_s = (int)v;
	v = 0;
	if ((rc = get_int(obj, "priority", INT_MIN, INT_MAX, &v, err)))
		return rc;
	s->priority = (int)v;
	return 0;
}

/* label names the task while its id is not yet known. */
static int parse_task(const cJSON *obj, struct task_spec *s, const char *label,
		      struct orch_err *err)
{
	int rc = parse_task_body(obj, s, err);
	if (rc == -EINVAL) {
		if (s->id[0])
			return err_prefix(err, "task %s: ", s->id);
		return err_prefix(err, "%s: ", label);
	}
	return rc;
}

void task_spec_free(struct task_spec *s)
{
	if (!s)
		return;
	free(s->command);
	free(s->title);
	free(s->cwd);
	free(s->model);
	strv_free(s->env, s->nenv);
	strv_free(s->slurm, s->nslurm);
	free(s->deps);
	memset(s, 0, sizeof *s);
}

/* ---- plan ---- */

static int cmp_task_id(const void *a, const void *b)
{
	const struct task_spec *const *x = a, *const *y = b;
	return strcmp((*x)->id, (*y)->id);
}

static int check_unique_tasks(const struct cmd_plan *p, struct orch_err *err)
{
	if (p->ntasks < 2)
		return 0;
	const struct task_spec **v = xcalloc(p->ntasks, sizeof *v);
	for (size_t i = 0; i < p->ntasks; i++)
		v[i] = &p->tasks[i];
	qsort(v, p->ntasks, sizeof *v, cmp_task_id);
	int rc = 0;
	for (size_t i = 1; i < p->ntasks && !rc; i++)
		if (strcmp(v[i - 1]->id, v[i]->id) == 0)
			rc = err_set(err, EEXIST, "task id %s appears twice in the plan", v[i]->id);
	free(v);
	return rc;
}

static const char *const plan_keys[] = {"id", "title", "budget_usd", "runner", "tasks", NULL};

static int parse_plan_json(const cJSON *root, struct cmd_plan *out, struct orch_err *err)
{
	int rc;
	if (!cJSON_IsObject(root))
		return err_set(err, EINVAL,
			       "a plan is a JSON object {\"id\",\"title\"?,\"budget_usd\"?,\"tasks\":[…]}");
	enum runner_kind runner = RUNNER_DEFAULT;
	if ((rc = json_check_keys(root, plan_keys, err)) ||
	    (rc = get_id(root, "id", "track", true, out->id, err)) ||
	    (rc = get_string(root, "title", false, &out->title, err)) ||
	    (rc = get_runner(root, &runner, err)))
		return rc;
	const cJSON *b = member(root, "budget_usd");
	if (b && !json_usd(b, &out->budget_micro))
		return err_set(err, EINVAL, "\"budget_usd\" must be a number of USD >= 0");
	const cJSON *tasks = member(root, "tasks");
	if (!tasks)
		return err_set(err, EINVAL, "\"tasks\" is required (it may be [])");
	if (!cJSON_IsArray(tasks))
		return err_set(err, EINVAL, "\"tasks\" must be an array of tasks");
	size_t n = (size_t)cJSON_GetArraySize(tasks);
	if (n) {
		out->tasks = xcalloc(n, sizeof *out->tasks);
		out->ntasks = n;   /* zeroed entries free cleanly if a later one fails */
	}
	size_t i = 0;
	for (const cJSON *t = tasks->child; t; t = t->next, i++) {
		char label[48];
		snprintf(label, sizeof label, "task %zu of the plan", i + 1);
		if ((rc = parse_task(t, &out->tasks[i], label, err)))
			return rc;
		/* the plan's runner is its tasks' unless they name their own */
		if (out->tasks[i].runner == RUNNER_DEFAULT)
			out->tasks[i].runner = runner;
	}
	return check_unique_tasks(out, err);
}

int cmd_parse_plan(const char *in, size_t len, struct cmd_plan *out, struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	out->budget_micro = -1;
	cJSON *root = NULL;
	int rc = input_prepare(in, &len, err);
	if (!rc) {
		char c = first_byte(in, len);
		if (c != '{' && c != '[')
			rc = err_set(err, EINVAL,
				     "a plan is JSON: {\"id\",\"title\"?,\"budget_usd\"?,\"tasks\":[…]}");
	}
	if (!rc)
		rc = json_parse(in, len, &root, err);
	if (!rc)
		rc = parse_plan_json(root, out, err);
	cJSON_Delete(root);
	if (rc)
		cmd_plan_free(out);
	return rc;
}

void cmd_plan_free(struct cmd_plan *p)
{
	if (!p)
		return;
	free(p->title);
	for (size_t i = 0; i < p->ntasks; i++)
		task_spec_free(&p->tasks[i]);
	free(p->tasks);
	memset(p, 0, sizeof *p);
}

/* ---- spawn ---- */

static const char *const spawn_keys[] = {"command", "task", "track", "cwd", "env", "model", NULL};

static int parse_spawn_json(const cJSON *root, struct cmd_spawn *out, struct orch_err *err)
{
	int rc;
	if (!cJSON_IsObject(root))
		return err_set(err, EINVAL, "spawn takes a command line or a JSON object");
	if ((rc = json_check_keys(root, spawn_keys, err)) ||
	    (rc = get_command(root, &out->command, err)) ||
	    (rc = get_id(root, "task", "task", false, out->task, err)) ||
	    (rc = get_id(root, "track", "track", false, out->track, err)) ||
	    (rc = get_cwd(root, &out->cwd, err)) ||
	    (rc = get_model(root, &out->model, err)))
		return rc;
	return get_env(root, &out->env, &out->nenv, err);
}

int cmd_parse_spawn(const char *in, size_t len, struct cmd_spawn *out, struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	int rc = input_prepare(in, &len, err);
	if (rc)
		return rc;
	/* Only '{' means JSON: spawn has no array form, and "[ -f x ] && make"
	 * is a common shell line. */
	if (first_byte(in, len) == '{') {
		cJSON *root = NULL;
		rc = json_parse(in, len, &root, err);
		if (!rc)
			rc = parse_spawn_json(root, out, err);
		cJSON_Delete(root);
	} else if (first_byte(in, len) == '\0') {
		rc = err_set(err, EINVAL, "spawn needs a command line");
	} else if (!(rc = check_command(in, len, err))) {
		out->command = xstrndup(in, len);
	}
	if (rc)
		cmd_spawn_free(out);
	return rc;
}

void cmd_spawn_free(struct cmd_spawn *s)
{
	if (!s)
		return;
	free(s->command);
	free(s->cwd);
	free(s->model);
	strv_free(s->env, s->nenv);
	memset(s, 0, sizeof *s);
}

/* ---- signals ---- */

/* Canonical names first: signal_name returns the first match. */
static const struct {
	int sig;
	const char *name;
} signal_table[] = {
	{SIGHUP, "HUP"}, {SIGINT, "INT"}, {SIGQUIT, "QUIT"}, {SIGILL, "ILL"},
	{SIGTRAP, "TRAP"}, {SIGABRT, "ABRT"}, {SIGBUS, "BUS"}, {SIGFPE, "FPE"},
	{SIGKILL, "KILL"}, {SIGUSR1, "USR1"}, {SIGSEGV, "SEGV"}, {SIGUSR2, "USR2"},
	{SIGPIPE, "PIPE"}, {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},
#ifdef SIGSTKFLT
	{SIGSTKFLT, "STKFLT"},
#endif
	{SIGCHLD, "CHLD"}, {SIGCONT, "CONT"}, {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"},
	{SIGTTIN, "TTIN"}, {SIGTTOU, "TTOU"}, {SIGURG, "URG"}, {SIGXCPU, "XCPU"},
	{SIGXFSZ, "XFSZ"}, {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"},
	{SIGIO, "IO"},
#ifdef SIGPWR
	{SIGPWR, "PWR"},
#endif
	{SIGSYS, "SYS"},
	/* aliases, accepted but never printed */
	{SIGABRT, "IOT"}, {SIGIO, "POLL"}, {SIGCHLD, "CLD"},
};

/* Numbers for the signals without a name (the real-time range), so that
 * signal_name never needs a buffer. */
static const char *const signal_numbers[SIG_MAX + 1] = {
	"0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
	"10", "11", "12", "13", "14", "15", "16", "17", "18", "19",
	"20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
	"30", "31", "32", "33", "34", "35", "36", "37", "38", "39",
	"40", "41", "42", "43", "44", "45", "46", "47", "48", "49",
	"50", "51", "52", "53", "54", "55", "56", "57", "58", "59",
	"60", "61", "62", "63", "64",
};

int signal_from_name(const char *s)
{
	if (!s || !*s)
		return -1;
	if (s[0] >= '0' && s[0] <= '9') {
		uint64_t v;
		if (!parse_u64(s, strlen(s), SIG_MAX, &v) || v == 0)
			return -1;
		return (int)v;
	}
	if (strncasecmp(s, "SIG", 3) == 0)
		s += 3;
	for (size_t i = 0; i < sizeof signal_table / sizeof signal_table[0]; i++)
		if (strcasecmp(s, signal_table[i].name) == 0)
			return signal_table[i].sig;
	return -1;
}

const char *signal_name(int sig)
{
	for (size_t i = 0; i < sizeof signal_table / sizeof signal_table[0]; i++)
		if (signal_table[i].sig == sig)
			return signal_table[i].name;
	if (sig >= 1 && sig <= SIG_MAX)
		return signal_numbers[sig];
	return "UNKNOWN";
}

/* ---- kill ---- */

static int kill_signal_tok(struct tok t, struct cmd_kill *out, struct orch_err *err)
{
	char name[16];
	int sig = -1;
	if (t.n < sizeof name) {
		memcpy(name, t.p, t.n);
		name[t.n] = '\0';
		sig = signal_from_name(name);
	}
	if (sig < 0)
		return err_set(err, EINVAL, "unknown signal \"%.*s\"", show_len(t.n), t.p);
	out->signal = sig;
	return 0;
}

static int grace_error(struct orch_err *err)
{
	return err_set(err, EINVAL, "grace must be a whole number of seconds 0..%d", GRACE_MAX);
}

static int parse_kill_line(const char *in, size_t len, bool per_worker, struct cmd_kill *out,
			   struct orch_err *err)
{
	static const char *const usage[2] = {
		"kill takes ID [SIGNAL] [grace=SECONDS]",
		"kill takes [SIGNAL] [grace=SECONDS]",
	};
	struct tok t[MAX_TOKENS];
	size_t n = tokenize(in, len, t, MAX_TOKENS), i = 0;
	if (!per_worker) {
		uint64_t id;
		if (n == 0)
			return err_set(err, EINVAL, "kill needs a worker id: %s", usage[0]);
		if (!parse_u64(t[0].p, t[0].n, INT_MAX, &id) || id == 0)
			return err_set(err, EINVAL, "bad worker id \"%.*s\": a whole number >= 1",
				       show_len(t[0].n), t[0].p);
		out->id = (int)id;
		i = 1;
	}
	if (n > i + 2)
		return err_set(err, EINVAL, "too many words: %s", usage[per_worker]);
	bool have_sig = false, have_grace = false;
	for (; i < n; i++) {
		if (t[i].n >= 6 && memcmp(t[i].p, "grace=", 6) == 0) {
			uint64_t g;
			if (have_grace)
				return err_set(err, EINVAL, "grace given twice");
			if (!parse_u64(t[i].p + 6, t[i].n - 6, GRACE_MAX, &g))
				return grace_error(err);
			out->grace_s = (int)g;
			have_grace = true;
		} else {
			if (have_sig)
				return err_set(err, EINVAL, "two signals given: %s", usage[per_worker]);
			int rc = kill_signal_tok(t[i], out, err);
			if (rc)
				return rc;
			have_sig = true;
		}
	}
	return 0;
}

static int parse_kill_json(const cJSON *root, bool per_worker, struct cmd_kill *out,
			   struct orch_err *err)
{
	static const char *const keys[] = {"id", "signal", "grace_s", NULL};
	int rc;
	if (!cJSON_IsObject(root))
		return err_set(err, EINVAL, "kill takes a line or a JSON object");
	if (per_worker && cJSON_GetObjectItemCaseSensitive(root, "id"))
		return err_set(err, EINVAL, "\"id\" does not belong here: the path names the worker");
	if ((rc = json_check_keys(root, keys, err)))
		return rc;
	if (!per_worker) {
		const cJSON *id = member(root, "id");
		int64_t v;
		if (!id)
			return err_set(err, EINVAL, "\"id\" is required");
		if (!json_int(id, 1, INT_MAX, &v))
			return err_set(err, EINVAL, "\"id\" must be a worker id, a whole number >= 1");
		out->id = (int)v;
	}
	const cJSON *sig = member(root, "signal");
	if (sig && cJSON_IsString(sig)) {
		rc = kill_signal_tok((struct tok){sig->valuestring, strlen(sig->valuestring)}, out,
				     err);
		if (rc)
			return rc;
	} else if (sig) {
		int64_t v;
		if (!json_int(sig, 1, SIG_MAX, &v))
			return err_set(err, EINVAL,
				       "\"signal\" must be a signal name or a number 1..%d", SIG_MAX);
		out->signal = (int)v;
	}
	const cJSON *g = member(root, "grace_s");
	if (g) {
		int64_t v;
		if (!json_int(g, 0, GRACE_MAX, &v))
			return err_set(err, EINVAL, "\"grace_s\" must be a whole number 0..%d",
				       GRACE_MAX);
		out->grace_s = (int)v;
	}
	return 0;
}

int cmd_parse_kill(const char *in, size_t len, bool per_worker, struct cmd_kill *out,
		   struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	out->signal = SIGTERM;
	out->grace_s = -1;
	int rc = input_prepare(in, &len, err);
	if (!rc && first_byte(in, len) == '{') {
		cJSON *root = NULL;
		rc = json_parse(in, len, &root, err);
		if (!rc)
			rc = parse_kill_json(root, per_worker, out, err);
		cJSON_Delete(root);
	} else if (!rc) {
		rc = parse_kill_line(in, len, per_worker, out, err);
	}
	if (rc)
		memset(out, 0, sizeof *out);
	return rc;
}

/* ---- DAG mutation ---- */

static const struct {
	const char *name;
	enum dag_op_kind kind;
	int nids;              /* ids the line form takes; -1: no line form */
	const char *usage;
	bool track;            /* its one id is a track's ("track" in JSON) */
} dag_ops[] = {
	{"add_task", DAG_ADD_TASK, -1, NULL, false},
	{"remove_task", DAG_REMOVE_TASK, 1, "remove_task T", false},
	{"add_dep", DAG_ADD_DEP, 2, "add_dep T D", false},
	{"remove_dep", DAG_REMOVE_DEP, 2, "remove_dep T D", false},
	{"retry", DAG_RETRY, 1, "retry T", false},
	{"skip", DAG_SKIP, 1, "skip T", false},
	{"hold", DAG_HOLD, 1, "hold T", false},
	{"release", DAG_RELEASE, 1, "release T", false},
	{"cancel", DAG_CANCEL, 1, "cancel T", false},
	{"remove_track", DAG_REMOVE_TRACK, 1, "remove_track K", true},
	{"archive", DAG_ARCHIVE, 1, "archive K", true},
};
#define NDAG_OPS (sizeof dag_ops / sizeof dag_ops[0])

static struct dag_op *mutate_push(struct cmd_mutate *m, enum dag_op_kind kind)
{
	/* capacity doubles at each power of two from 4 (the struct has no cap
	 * field), so a write of many short lines stays linear */
	size_t n = m->nops;
	if (n == 0)
		m->ops = xmalloc(4 * sizeof *m->ops);
	else if (n >= 4 && (n & (n - 1)) == 0)
		m->ops = xrealloc(m->ops, 2 * n * sizeof *m->ops);
	struct dag_op *op = &m->ops[m->nops++];
	memset(op, 0, sizeof *op);
	op->kind = kind;
	return op;
}

/* A dep on itself is a cycle of one; say so before the DAG names a path. */
static int check_self_dep(const struct dag_op *op, struct orch_err *err)
{
	if (op->kind == DAG_ADD_DEP && strcmp(op->task, op->dep) == 0)
		return err_set(err, ELOOP, "task %s depends on itself", op->task);
	return 0;
}

static int parse_mutate_line(struct tok *t, size_t n, struct cmd_mutate *m, struct orch_err *err)
{
	size_t k = 0;
	while (k < NDAG_OPS && !tok_is(t[0], dag_ops[k].name))
		k++;
	if (k == NDAG_OPS)
		return err_set(err, EINVAL, "unknown operation \"%.*s\"", show_len(t[0].n), t[0].p);
	if (dag_ops[k].nids < 0)
		return err_set(err, EINVAL,
			       "%s needs the JSON form: {\"op\":\"add_task\",\"track\":\"…\",\"task\":{…}}",
			       dag_ops[k].name);
	if (n != (size_t)dag_ops[k].nids + 1)
		return err_set(err, EINVAL, "%s takes %d %s id%s: %s", dag_ops[k].name,
			       dag_ops[k].nids, dag_ops[k].track ? "track" : "task",
			       dag_ops[k].nids == 1 ? "" : "s", dag_ops[k].usage);
	struct dag_op *op = mutate_push(m, dag_ops[k].kind);
	if (dag_ops[k].track)
		return copy_id(t[1].p, t[1].n, "track", op->track, err);
	int rc = copy_id(t[1].p, t[1].n, "task", op->task, err);
	if (!rc && n > 2)
		rc = copy_id(t[2].p, t[2].n, "task", op->dep, err);
	if (!rc)
		rc = check_self_dep(op, err);
	return rc;
}

static int parse_mutate_lines(const char *in, size_t len, struct cmd_mutate *m,
			      struct orch_err *err)
{
	size_t lineno = 0;
	const char *p = in, *end = in + len;
	while (p < end) {
		/* ';' separates operations too: a shell's echo writes one line at a
		 * time, so "hold a; add_dep b a" is how a batch fits one write. */
		const char *le = p;
		while (le < end && *le != '\n' && *le != ';')
			le++;
		lineno++;
		struct tok t[MAX_TOKENS];
		size_t n = tokenize(p, (size_t)(le - p), t, MAX_TOKENS);
		if (n > MAX_TOKENS)
			n = MAX_TOKENS;   /* still more than any op takes: the count check fails */
		if (n && t[0].p[0] != '#') {
			int rc = parse_mutate_line(t, n, m, err);
			if (rc)
				return err_prefix(err, "operation %zu: ", lineno);
		}
		p = le + 1;
	}
	if (m->nops == 0)
		return err_set(err, EINVAL, "no operations given");
	return 0;
}

static int parse_mutate_obj(const cJSON *obj, struct cmd_mutate *m, struct orch_err *err)
{
	static const char *const keys_task[] = {"op", "task", "track", NULL};
	static const char *const keys_one[] = {"op", "task", NULL};
	static const char *const keys_two[] = {"op", "task", "dep", NULL};
	static const char *const keys_track[] = {"op", "track", NULL};
	if (!cJSON_IsObject(obj))
		return err_set(err, EINVAL, "an operation must be a JSON object with \"op\"");
	const cJSON *opv = member(obj, "op");
	if (!opv)
		return err_set(err, EINVAL, "\"op\" is required");
	if (!cJSON_IsString(opv))
		return err_set(err, EINVAL, "\"op\" must be a string");
	size_t k = 0;
	while (k < NDAG_OPS && strcmp(opv->valuestring, dag_ops[k].name) != 0)
		k++;
	if (k == NDAG_OPS)
		return err_set(err, EINVAL, "unknown operation \"%.*s\"",
			       show_len(strlen(opv->valuestring)), opv->valuestring);
	int rc;
	struct dag_op *op = mutate_push(m, dag_ops[k].kind);
	if (dag_ops[k].nids < 0) {
		if ((rc = json_check_keys(obj, keys_task, err)) ||
		    (rc = get_id(obj, "track", "track", true, op->track, err)))
			return rc;
		const cJSON *task = member(obj, "task");
		if (!task)
			return err_set(err, EINVAL, "\"task\" is required");
		if (!cJSON_IsObject(task))
			return err_set(err, EINVAL, "\"task\" of add_task must be a task object");
		if ((rc = parse_task(task, &op->spec, "the task of add_task", err)))
			return rc;
		memcpy(op->task, op->spec.id, sizeof op->task);
		return 0;
	}
	if (dag_ops[k].track)
		return (rc = json_check_keys(obj, keys_track, err))
			       ? rc
			       : get_id(obj, "track", "track", true, op->track, err);
	if ((rc = json_check_keys(obj, dag_ops[k].nids == 1 ? keys_one : keys_two, err)) ||
	    (rc = get_id(obj, "task", "task", true, op->task, err)))
		return rc;
	if (dag_ops[k].nids == 2 && (rc = get_id(obj, "dep", "task", true, op->dep, err)))
		return rc;
	return check_self_dep(op, err);
}

static int parse_mutate_json(const cJSON *root, struct cmd_mutate *m, struct orch_err *err)
{
	if (cJSON_IsObject(root))
		return parse_mutate_obj(root, m, err);
	if (!cJSON_IsArray(root))
		return err_set(err, EINVAL, "a mutation is a JSON object or an array of objects");
	if (!root->child)
		return err_set(err, EINVAL, "no operations given");
	size_t i = 0;
	for (const cJSON *c = root->child; c; c = c->next) {
		i++;
		int rc = parse_mutate_obj(c, m, err);
		if (rc)
			return err_prefix(err, "operation %zu: ", i);
	}
	return 0;
}

int cmd_parse_mutate(const char *in, size_t len, struct cmd_mutate *out, struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	int rc = input_prepare(in, &len, err);
	char c = rc ? '\0' : first_byte(in, len);
	if (!rc && (c == '{' || c == '[')) {
		cJSON *root = NULL;
		rc = json_parse(in, len, &root, err);
		if (!rc)
			rc = parse_mutate_json(root, out, err);
		cJSON_Delete(root);
	} else if (!rc) {
		rc = parse_mutate_lines(in, len, out, err);
	}
	if (rc)
		cmd_mutate_free(out);
	return rc;
}

void cmd_mutate_free(struct cmd_mutate *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->nops; i++)
		task_spec_free(&m->ops[i].spec);
	free(m->ops);
	memset(m, 0, sizeof *m);
}

/* ---- usage ---- */

static int parse_usage_line(const char *in, size_t len, struct usage *out, struct orch_err *err)
{
	static const char *const keys[] = {"model", "in", "out", "cache_read", "cache_write"};
	int64_t *const counts[] = {NULL, &out->input, &out->output, &out->cache_read,
				   &out->cache_write};
	bool seen[5] = {false};
	struct tok t[MAX_TOKENS];
	size_t n = tokenize(in, len, t, MAX_TOKENS);
	if (n > 5)
		return err_set(err, EINVAL,
			       "too many words: model=NAME in=N out=N [cache_read=N] [cache_write=N]");
	for (size_t i = 0; i < n; i++) {
		const char *eq = memchr(t[i].p, '=', t[i].n);
		if (!eq)
			return err_set(err, EINVAL, "expected KEY=VALUE, got \"%.*s\"",
				       show_len(t[i].n), t[i].p);
		size_t kn = (size_t)(eq - t[i].p), k = 0;
		const char *v = eq + 1;
		size_t vn = t[i].n - kn - 1;
		while (k < 5 && !(strlen(keys[k]) == kn && memcmp(keys[k], t[i].p, kn) == 0))
			k++;
		if (k == 5)
			return err_set(err, EINVAL,
				       "unknown key \"%.*s\": keys are model, in, out, cache_read, cache_write",
				       show_len(kn), t[i].p);
		if (seen[k])
			return err_set(err, EINVAL, "\"%s\" given twice", keys[k]);
		seen[k] = true;
		if (k == 0) {
			int rc = check_model(v, vn, err);
			if (rc)
				return rc;
			memcpy(out->model, v, vn);
			out->model[vn] = '\0';
		} else {
			uint64_t c;
			if (!parse_u64(v, vn, USAGE_REPORT_MAX, &c))
				return err_set(err, EINVAL, "\"%s\" must be a whole number 0..%lld",
					       keys[k], USAGE_REPORT_MAX);
			*counts[k] = (int64_t)c;
		}
	}
	for (size_t k = 0; k < 3; k++)
		if (!seen[k])
			return err_set(err, EINVAL, "%s=%s is required: model=NAME in=N out=N", keys[k],
				       k ? "N" : "NAME");
	return 0;
}

static int parse_usage_json(const cJSON *root, struct usage *out, struct orch_err *err)
{
	static const char *const keys[] = {"model", "input_tokens", "output_tokens",
					   "cache_read_tokens", "cache_write_tokens", NULL};
	int64_t *const counts[] = {NULL, &out->input, &out->output, &out->cache_read,
				   &out->cache_write};
	int rc;
	if (!cJSON_IsObject(root))
		return err_set(err, EINVAL, "a usage report is a line or a JSON object");
	if ((rc = json_check_keys(root, keys, err)))
		return rc;
	const cJSON *model = member(root, "model");
	if (!model)
		return err_set(err, EINVAL, "\"model\" is required");
	if (!cJSON_IsString(model))
		return err_set(err, EINVAL, "\"model\" must be a string");
	if ((rc = check_model(model->valuestring, strlen(model->valuestring), err)))
		return rc;
	snprintf(out->model, sizeof out->model, "%s", model->valuestring);
	for (size_t k = 1; k < 5; k++) {
		const cJSON *v = member(root, keys[k]);
		if (!v) {
			if (k <= 2)
				return err_set(err, EINVAL, "\"%s\" is required", keys[k]);
			continue;
		}
		if (!json_int(v, 0, USAGE_REPORT_MAX, counts[k]))
			return err_set(err, EINVAL, "\"%s\" must be a whole number 0..%lld", keys[k],
				       USAGE_REPORT_MAX);
	}
	return 0;
}

int cmd_parse_usage(const char *in, size_t len, struct usage *out, struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	int rc = input_prepare(in, &len, err);
	if (!rc && first_byte(in, len) == '{') {
		cJSON *root = NULL;
		rc = json_parse(in, len, &root, err);
		if (!rc)
			rc = parse_usage_json(root, out, err);
		cJSON_Delete(root);
	} else if (!rc) {
		rc = parse_usage_line(in, len, out, err);
	}
	if (rc)
		memset(out, 0, sizeof *out);
	else
		out->reports = 1;
	return rc;
}

/* ---- context inject ---- */

/* Joins a relative path to cwd and resolves "." and ".." by text alone: the
 * file may not exist yet, and symlinks are the context store's business. */
static int path_resolve(const char *p, size_t n, const char *cwd, char **out,
			struct orch_err *err)
{
	if (n == 0)
		return err_set(err, EINVAL, "the path is empty");
	struct buf joined = BUF_INIT;
	if (p[0] != '/') {
		if (!cwd || cwd[0] != '/')
			return err_set(err, EINVAL,
				       "a relative path needs the writer's working directory; give an absolute path");
		buf_puts(&joined, cwd);
		buf_putc(&joined, '/');
	}
	buf_append(&joined, p, n);

	char *res = xmalloc(joined.len + 2);
	size_t rn = 0;
	const char *s = joined.data, *e = joined.data + joined.len;
	while (s < e) {
		while (s < e && *s == '/')
			s++;
		const char *c = s;
		while (s < e && *s != '/')
			s++;
		size_t cn = (size_t)(s - c);
		if (cn == 0 || (cn == 1 && c[0] == '.'))
			continue;
		if (cn == 2 && c[0] == '.' && c[1] == '.') {
			while (rn > 0 && res[rn - 1] != '/')
				rn--;
			if (rn > 0)
				rn--;   /* the slash before the dropped component */
			continue;
		}
		res[rn++] = '/';
		memcpy(res + rn, c, cn);
		rn += cn;
	}
	if (rn == 0)
		res[rn++] = '/';
	res[rn] = '\0';
	buf_free(&joined);
	*out = res;
	return 0;
}

static int parse_inject_line(const char *in, size_t len, const char *cwd,
			     struct ctx_inject_req *out, struct orch_err *err)
{
	const char *p = in;
	size_t n = len;
	trim(&p, &n);
	if (memchr(p, '\n', n))
		return err_set(err, EINVAL,
			       "the line form is one line; use JSON {\"text\":…} for text with newlines");
	struct tok t[MAX_TOKENS];
	size_t nt = tokenize(p, n, t, MAX_TOKENS);
	if (nt == 0)
		return err_set(err, EINVAL,
			       "inject takes PATH, skeleton PATH, PATH as NAME or text TEXT");
	if (tok_is(t[0], "text")) {
		if (nt == 1)
			return err_set(err, EINVAL,
				       "text needs some text after it (for a file named text, write ./text)");
		/* the rest of the line, spaces and all */
		out->kind = CTX_TEXT;
		out->text = xstrndup(t[1].p, (size_t)(p + n - t[1].p));
		return 0;
	}
	size_t i = 0;
	out->kind = CTX_FILE;
	if (tok_is(t[0], "skeleton")) {
		if (nt == 1)
			return err_set(err, EINVAL,
				       "skeleton needs a path (for a file named skeleton, write ./skeleton)");
		out->kind = CTX_SKELETON;
		i = 1;
	}
	if (nt == i + 3 && tok_is(t[i + 1], "as")) {
		int rc = copy_name(t[i + 2].p, t[i + 2].n, out->name, err);
		if (rc)
			return rc;
	} else if (nt != i + 1) {
		return err_set(err, EINVAL,
			       "inject takes [skeleton] PATH [as NAME] or text TEXT; paths with spaces need the JSON form");
	}
	return path_resolve(t[i].p, t[i].n, cwd, &out->path, err);
}

static int parse_inject_json(const cJSON *root, const char *cwd, struct ctx_inject_req *out,
			     struct orch_err *err)
{
	static const char *const keys[] = {"path", "text", "name", "kind", NULL};
	int rc;
	if (!cJSON_IsObject(root))
		return err_set(err, EINVAL, "inject takes a line or a JSON object");
	if ((rc = json_check_keys(root, keys, err)))
		return rc;
	const cJSON *path = member(root, "path"), *text = member(root, "text");
	const cJSON *name = member(root, "name"), *kind = member(root, "kind");
	if (path && text)
		return err_set(err, EINVAL, "give \"path\" or \"text\", not both");
	if (!path && !text)
		return err_set(err, EINVAL, "inject needs \"path\" or \"text\"");
	out->kind = text ? CTX_TEXT : CTX_FILE;
	if (kind) {
		const char *k = cJSON_IsString(kind) ? kind->valuestring : "";
		enum ctx_kind want;
		if (strcmp(k, "file") == 0)
			want = CTX_FILE;
		else if (strcmp(k, "skeleton") == 0)
			want = CTX_SKELETON;
		else if (strcmp(k, "text") == 0)
			want = CTX_TEXT;
		else
			return err_set(err, EINVAL, "\"kind\" must be \"file\", \"skeleton\" or \"text\"");
		if ((want == CTX_TEXT) != (text != NULL))
			return err_set(err, EINVAL, "kind \"%s\" needs \"%s\"", k,
				       want == CTX_TEXT ? "text" : "path");
		out->kind = want;
	}
	if (name) {
		if (!cJSON_IsString(name))
			return err_set(err, EINVAL, "\"name\" must be a string");
		if ((rc = copy_name(name->valuestring, strlen(name->valuestring), out->name, err)))
			return rc;
	}
	if (text) {
		if (!cJSON_IsString(text))
			return err_set(err, EINVAL, "\"text\" must be a string");
		if (!text->valuestring[0])
			return err_set(err, EINVAL, "\"text\" must not be empty");
		out->text = xstrdup(text->valuestring);
		return 0;
	}
	if (!cJSON_IsString(path))
		return err_set(err, EINVAL, "\"path\" must be a string");
	return path_resolve(path->valuestring, strlen(path->valuestring), cwd, &out->path, err);
}

int cmd_parse_inject(const char *in, size_t len, const char *cwd, struct ctx_inject_req *out,
		     struct orch_err *err)
{
	memset(out, 0, sizeof *out);
	int rc = input_prepare(in, &len, err);
	/* only '{': "[draft].md" is a file name */
	if (!rc && first_byte(in, len) == '{') {
		cJSON *root = NULL;
		rc = json_parse(in, len, &root, err);
		if (!rc)
			rc = parse_inject_json(root, cwd, out, err);
		cJSON_Delete(root);
	} else if (!rc) {
		rc = parse_inject_line(in, len, cwd, out, err);
	}
	if (rc)
		ctx_inject_req_free(out);
	return rc;
}

void ctx_inject_req_free(struct ctx_inject_req *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->text);
	memset(r, 0, sizeof *r);
}

/* ---- one-value files ---- */

int cmd_parse_name(const char *in, size_t len, char out[ID_MAX + 1], struct orch_err *err)
{
	out[0] = '\0';
	int rc = input_prepare(in, &len, err);
	if (rc)
		return rc;
	if (first_byte(in, len) == '{') {
		static const char *const keys[] = {"name", NULL};
		cJSON *root = NULL;
		const cJSON *name;
		rc = json_parse(in, len, &root, err);
		if (!rc && (rc = json_check_keys(root, keys, err)) == 0) {
			name = member(root, "name");
			if (!cJSON_IsString(name))
				rc = err_set(err, EINVAL, "\"name\" is required, a string");
			else
				rc = copy_name(name->valuestring, strlen(name->valuestring), out, err);
		}
		cJSON_Delete(root);
		if (rc)
			out[0] = '\0';
		return rc;
	}
	const char *p = in;
	trim(&p, &len);
	return copy_name(p, len, out, err);
}

int cmd_parse_int(const char *in, size_t len, int64_t min, int64_t max, int64_t *out,
		  struct orch_err *err)
{
	int rc = input_prepare(in, &len, err);
	if (rc)
		return rc;
	const char *p = in;
	trim(&p, &len);
	const char *digits = p;
	size_t dn = len;
	bool neg = false;
	if (dn && (digits[0] == '-' || digits[0] == '+')) {
		neg = digits[0] == '-';
		digits++;
		dn--;
	}
	uint64_t mag;
	if (!parse_u64(digits, dn, UINT64_MAX, &mag))
		return err_set(err, EINVAL, "expected a whole number %lld..%lld, got \"%.*s\"",
			       (long long)min, (long long)max, show_len(len), p);
	bool ok;
	int64_t v = 0;
	if (neg) {
		ok = mag <= (uint64_t)INT64_MAX + 1;
		if (ok)
			v = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
	} else {
		ok = mag <= (uint64_t)INT64_MAX;
		v = (int64_t)mag;
	}
	if (!ok || v < min || v > max)
		return err_set(err, EINVAL, "%.*s is out of range %lld..%lld", show_len(len), p,
			       (long long)min, (long long)max);
	*out = v;
	return 0;
}

int cmd_parse_usd(const char *in, size_t len, int64_t *micro, struct orch_err *err)
{
	int rc = input_prepare(in, &len, err);
	if (rc)
		return rc;
	const char *p = in;
	trim(&p, &len);
	if (len && p[0] == '-')
		return err_set(err, EINVAL, "an amount of USD must not be negative");
	const char *dot = memchr(p, '.', len);
	size_t in_n = dot ? (size_t)(dot - p) : len;
	size_t fr_n = dot ? len - in_n - 1 : 0;
	bool ok = in_n + fr_n > 0 && !(dot && fr_n == 0);
	for (size_t i = 0; ok && i < len; i++)
		ok = (p[i] >= '0' && p[i] <= '9') || p + i == dot;
	if (!ok)
		return err_set(err, EINVAL, "expected an amount of USD such as 12.5, got \"%.*s\"",
			       show_len(len), p);
	if (fr_n > 6)
		return err_set(err, EINVAL, "at most 6 decimals (a micro-dollar), got \"%.*s\"",
			       show_len(len), p);
	uint64_t whole = 0, frac = 0;
	if ((in_n && !parse_u64(p, in_n, (uint64_t)USD_INT_MAX, &whole)) ||
	    (fr_n && !parse_u64(dot + 1, fr_n, UINT64_MAX, &frac)) ||
	    (whole == (uint64_t)USD_INT_MAX && frac))
		return err_set(err, EINVAL, "an amount of USD must be at most %lld", USD_INT_MAX);
	for (size_t i = fr_n; i < 6; i++)
		frac *= 10;
	*micro = (int64_t)(whole * 1000000 + frac);
	return 0;
}

int cmd_parse_text(const char *in, size_t len, struct orch_err *err)
{
	return input_prepare(in, &len, err);
}

int cmd_parse_pause(const char *in, size_t len, bool *freeze, struct orch_err *err)
{
	*freeze = false;
	int rc = input_prepare(in, &len, err);
	if (rc)
		return rc;
	const char *p = in;
	trim(&p, &len);
	if (len == 6 && strncasecmp(p, "freeze", 6) == 0) {
		*freeze = true;
		return 0;
	}
	if (len == 0 || p[0] != '{')
		return 0;
	/* JSON that does not parse, or says nothing of freeze, still pauses */
	cJSON *root = NULL;
	struct orch_err ignored;
	if (json_parse(p, len, &root, &ignored))
		return 0;
	*freeze = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "freeze"));
	cJSON_Delete(root);
	return 0;
}
