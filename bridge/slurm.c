/* slurm: the Slurm runner (runner.h): a worker is a batch job. Start is
 * `sbatch --parsable`; each poll interval one `squeue` asked about our jobs
 * only gives their queue state, and `scontrol show job` (else `sacct`) the
 * end of those that left the queue; a kill is `scancel`, a freeze
 * `scontrol suspend`. Commands run on the runner's own
 * thread (orchfs-slurm), never under the model's lock: a slow controller
 * slows the jobs, not the mount.
 *   jq .slurm mma/workers/7/info.json   # {"job_id":"42","state":"PENDING","reason":"Resources"} */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cmd.h"
#include "json.h"

/* A Slurm command that takes longer is given up (a controller that is down
 * makes sbatch wait 4 s, squeue 8 s). */
#define SLURM_CMD_MS 30000
#define SLURM_STATE_MAX 24
#define SLURM_REASON_MAX 128

struct runner_job {
	int id;
	char job_id[24];
	char state[SLURM_STATE_MAX];     /* JobState, as scontrol says it */
	char reason[SLURM_REASON_MAX];
	bool ended;                      /* told: not polled any more */
	unsigned since;                  /* the poll it was first followed in */
	struct runner_job *next;         /* every job being followed */
};

/* A command for the thread: signal or freeze a job. */
struct slurm_order {
	char job_id[24];
	int sig;          /* 0: a freeze */
	bool frozen;
	struct slurm_order *next;
};

struct slurm {
	struct runner base;
	int poll_ms;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool started, stop;
	struct runner_job *jobs;
	unsigned polls;                  /* scontrol calls started */
	struct slurm_order *orders, **orders_tail;
};

static struct slurm *slurm_of(struct runner *r)
{
	return (struct slurm *)r;
}

/* --- running Slurm's commands --- */

/* Runs argv (found in PATH) with envp, its stdout and stderr into out;
 * its exit status (0..255), or -errno. */
static int run_cmd(char *const argv[], char *const envp[], struct buf *out)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	pid_t pid;
	int rc = runner_spawn_cmd(&pid, argv[0], true, &fa, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	if (rc) {
		close(pipefd[0]);
		return -rc;
	}
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long left = SLURM_CMD_MS - ((now.tv_sec - start.tv_sec) * 1000 +
					    (now.tv_nsec - start.tv_nsec) / 1000000);
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) == 0) {
			kill(pid, SIGKILL);
			rc = -ETIMEDOUT;
			break;
		}
		char chunk[4096];
		ssize_t n = read(pipefd[0], chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (out->len < (1u << 24))
			buf_append(out, chunk, (size_t)n);
	}
	close(pipefd[0]);
	int wstatus;
	while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
		;
	if (!rc)
		rc = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
	buf_putc(out, '\0');
	out->len--;
	return rc;
}

extern char **environ;

/* --- what scontrol says --- */

/* The value of KEY= in an `scontrol show job -o` line, into out. Values end
 * at a space, except the last key's; the ones read here have none. */
static bool field(const char *line, const char *key, char *out, size_t size)
{
	size_t klen = strlen(key);
	for (const char *at = line; (at = strstr(at, key));) {
		if ((at == line || at[-1] == ' ') && at[klen] == '=') {
			const char *v = at + klen + 1;
			size_t n = strcspn(v, " \n");
			snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1), v);
			return true;
		}
		at += klen;
	}
	return false;
}

static bool state_is_final(const char *s)
{
	static const char *const live[] = {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING",
					   "CONFIGURING", "REQUEUED", "RESIZING", "SIGNALING",
					   "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "REQUEUE_FED",
					   "REQUEUE_HOLD", "SPECIAL_EXIT"};
	for (size_t i = 0; i < sizeof live / sizeof *live; i++)
		if (!strcmp(s, live[i]))
			return false;
	return true;
}

/* ExitCode=CODE:SIGNAL as a wait status */
static int wstatus_of(const char *exit_code)
{
	int code = 0, sig = 0;
	sscanf(exit_code, "%d:%d", &code, &sig);
	if (sig > 0 && sig < 128)
		return sig;                 /* WIFSIGNALED, WTERMSIG == sig */
	return (code & 0xff) << 8;          /* WIFEXITED */
}

/* How many job ids one squeue is asked about (an argument is at most 128 KiB). */
#define SLURM_IDS_PER_CALL 1000

/* A job to look at, copied out of the list (which may change meanwhile). */
struct look {
	int id;
	char job_id[24];
	unsigned since;
	bool seen, final;
};

/* A job's end from scontrol, else from accounting (sacct, where there is
 * some); false when neither knows it, or it has not ended after all. */
static bool end_of(const char *job_id, int *wstatus, bool *known)
{
	struct buf out = BUF_INIT;
	char *const show[] = {(char *)"scontrol", (char *)"show", (char *)"job", (char *)"-o",
			      (char *)job_id, NULL};
	char state[SLURM_STATE_MAX] = "", code[32] = "0:0";
	*known = run_cmd(show, environ, &out) == 0 && out.data &&
		 field(out.data, "JobState", state, sizeof state);
	if (*known)
		field(out.data, "ExitCode", code, sizeof code);
	buf_reset(&out);
	if (!*known) {
		char *const acct[] = {(char *)"sacct", (char *)"-n", (char *)"-P", (char *)"-X",
				      (char *)"-o", (char *)"State,ExitCode", (char *)"-j",
				      (char *)job_id, NULL};
		/* "COMPLETED|0:0", "CANCELLED by 0|0:15"; accounting off: exit 1 */
		const char *bar = run_cmd(acct, environ, &out) == 0 && out.data
					  ? strchr(out.data, '|') : NULL;
		if (bar && sscanf(out.data, "%23[A-Z_]", state) == 1 &&
		    sscanf(bar + 1, "%31[0-9:]", code) == 1)
			*known = true;
	}
	buf_free(&out);
	*wstatus = wstatus_of(code);
	return *known && state_is_final(state);
}

/* One look at the jobs followed (lock held, dropped meanwhile): their queue
 * state from squeue, asked only about them; the end of each that ended or
 * left the queue from scontrol or sacct. */
static void poll_once(struct slurm *s)
{
	unsigned poll = ++s->polls;
	struct look *looks = NULL;
	size_t n = 0, cap = 0;
	for (struct runner_job *j = s->jobs; j; j = j->next)
		if (!j->ended) {
			ARRAY_GROW(looks, cap, n + 1);
			looks[n] = (struct look){.id = j->id, .since = j->since};
			memcpy(looks[n++].job_id, j->job_id, sizeof j->job_id);
		}
	pthread_mutex_unlock(&s->lock);
	struct hashmap *by_job = hashmap_new();
	for (size_t i = 0; i < n; i++)
		hashmap_put(by_job, looks[i].job_id, &looks[i]);
	struct buf ids = BUF_INIT, out = BUF_INIT;
	for (size_t first = 0; first < n; first += SLURM_IDS_PER_CALL) {
		buf_reset(&ids);
		for (size_t i = first; i < n && i < first + SLURM_IDS_PER_CALL; i++)
			buf_printf(&ids, "%s%s", i > first ? "," : "", looks[i].job_id);
		char *const argv[] = {(char *)"squeue", (char *)"-h", (char *)"--states=all",
				      (char *)"-o", (char *)"%i|%T|%r", (char *)"-j", ids.data, NULL};
		/* ids Slurm no longer knows are left out (all unknown: exit 1) */
		run_cmd(argv, environ, &out);
		buf_putc(&out, '\n');
	}
	buf_free(&ids);
	pthread_mutex_lock(&s->lock);
	struct hashmap *jobs = hashmap_new();
	for (struct runner_job *j = s->jobs; j; j = j->next)
		hashmap_put(jobs, j->job_id, j);
	for (char *line = out.data, *next; line && *line; line = next) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = '\0';
		char job_id[24], state[SLURM_STATE_MAX], reason[SLURM_REASON_MAX] = "";
		if (sscanf(line, "%23[0-9]|%23[A-Z_]|%127[^\n]", job_id, state, reason) < 2)
			continue;
		struct look *l = hashmap_get(by_job, job_id);
		struct runner_job *j = hashmap_get(jobs, job_id);
		if (!l || !j || j->ended)
			continue;
		l->seen = true;
		l->final = state_is_final(state);
		if (l->final || (!strcmp(state, j->state) && !strcmp(reason, j->reason)))
			continue;
		snprintf(j->state, sizeof j->state, "%s", state);
		snprintf(j->reason, sizeof j->reason, "%s", reason);
		runner_tell(&s->base, (struct runner_end){j->id, 0, false, true});
	}
	hashmap_free(jobs);
	pthread_mutex_unlock(&s->lock);
	buf_free(&out);
	for (size_t i = 0; i < n; i++) {
		struct look *l = &looks[i];
		/* one submitted while squeue was asked may not be there yet */
		if (!l->final && (l->seen || l->since >= poll))
			continue;
		int wstatus;
		bool known;
		if (!end_of(l->job_id, &wstatus, &known) && known)
			continue;   /* not over after all (requeued): next time */
		pthread_mutex_lock(&s->lock);
		struct runner_job *j;
		for (j = s->jobs; j && strcmp(j->job_id, l->job_id); j = j->next)
			;
		if (j && !j->ended) {
			j->ended = true;
			/* unknown to scontrol and to accounting: its end is lost */
			runner_tell(&s->base, (struct runner_end){j->id, wstatus, !known, false});
		}
		pthread_mutex_unlock(&s->lock);
	}
	hashmap_free(by_job);
	free(looks);
	pthread_mutex_lock(&s->lock);
}

/* A signal goes to a running job's every process (--full: a batch job has
 * no steps, and plain --signal would reach none); a job that is not
 * running is cancelled, since scancel --signal waits for it to run. */
static void order_run(struct slurm *s, const struct slurm_order *o, bool running)
{
	struct buf out = BUF_INIT;
	char sig[32];
	if (o->sig) {
		snprintf(sig, sizeof sig, "--signal=%s", signal_name(o->sig));
		char *const full[] = {(char *)"scancel", (char *)"--full", sig, (char *)o->job_id, NULL};
		char *const plain[] = {(char *)"scancel", (char *)o->job_id, NULL};
		/* KILL, after the grace, is Slurm's own cancel (its TERM, then
		 * KILL after KillWait, and the job CANCELLED) */
		run_cmd(running && o->sig != SIGKILL ? full : plain, environ, &out);
	} else {
		char *const argv[] = {(char *)"scontrol", (char *)(o->frozen ? "suspend" : "resume"),
				      (char *)o->job_id, NULL};
		run_cmd(argv, environ, &out);
	}
	buf_free(&out);
	(void)s;
}

static void *slurm_main(void *arg)
{
	struct slurm *s = arg;
	pthread_setname_np(pthread_self(), "orchfs-slurm");
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		while (s->orders) {
			struct slurm_order *o = s->orders;
			s->orders = o->next;
			if (!s->orders)
				s->orders_tail = &s->orders;
			bool running = false;
			for (struct runner_job *j = s->jobs; j; j = j->next)
				if (!strcmp(j->job_id, o->job_id))
					running = !strcmp(j->state, "RUNNING");
			pthread_mutex_unlock(&s->lock);
			order_run(s, o, running);
			free(o);
			pthread_mutex_lock(&s->lock);
		}
		bool following = false;
		for (struct runner_job *j = s->jobs; j && !following; j = j->next)
			following = !j->ended;
		if (following)
			poll_once(s);
		if (s->stop || s->orders)
			continue;
		struct timespec until = time_mono_deadline(s->poll_ms);
		pthread_cond_timedwait(&s->wake, &s->lock, &until);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* lock held */
static void follow(struct slurm *s, struct runner_job *j)
{
	j->since = s->polls;
	j->next = s->jobs;
	s->jobs = j;
	if (!s->started)
		s->started = pthread_create(&s->thread, NULL, slurm_main, s) == 0;
	pthread_cond_signal(&s->wake);
}

static void unfollow(struct slurm *s, struct runner_job *job)
{
	pthread_mutex_lock(&s->lock);
	for (struct runner_job **at = &s->jobs; *at; at = &(*at)->next)
		if (*at == job) {
			*at = job->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	free(job);
}

/* --- the runner's operations --- */

static int slurm_start(struct runner *base, const struct runner_spec *specs, size_t n,
		       struct runner_job **out, int *rc, struct orch_err *err)
{
	struct slurm *s = slurm_of(base);
	int failed = 0;
	for (size_t i = 0; i < n; i++) {
		const struct runner_spec *spec = &specs[i];
		out[i] = NULL;
		/* the log is there from now on (tail -f); the job appends to it */
		int fd = open(spec->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc[i] = err_set(&err[i], EIO, "cannot make the log of worker %d: %s", spec->id,
					strerror(errno));
			failed++;
			continue;
		}
		close(fd);
		struct buf name = BUF_INIT, output = BUF_INIT, chdir = BUF_INIT, result = BUF_INIT;
		buf_printf(&name, "--job-name=orchfs-%s%sw%d", spec->name ? spec->name : "",
			   spec->name ? "-" : "", spec->id);
		buf_printf(&output, "--output=%s", spec->log_path);
		buf_printf(&chdir, "--chdir=%s", spec->cwd ? spec->cwd : "/");
		/* the environment is sbatch's own (--export=ALL): a value may hold
		 * the commas --export=VAR=... would cut at */
		char **argv = xcalloc(spec->noptions + 16, sizeof *argv);
		size_t a = 0;
		argv[a++] = (char *)"sbatch";
		argv[a++] = (char *)"--parsable";
		argv[a++] = name.data;
		argv[a++] = output.data;
		argv[a++] = (char *)"--open-mode=append";
		argv[a++] = chdir.data;
		argv[a++] = (char *)"--export=ALL";
		for (size_t k = 0; k < spec->noptions; k++)
			argv[a++] = spec->options[k];
		struct buf wrap = BUF_INIT;
		buf_printf(&wrap, "--wrap=%s", spec->command);
		argv[a++] = wrap.data;
		argv[a] = NULL;
		/* sbatch finds the cluster as the daemon does */
		char **envp = xcalloc(1, sizeof *envp);
		size_t ne = 0;
		for (char *const *e = spec->envp; e && *e; e++) {
			envp = xrealloc(envp, (ne + 2) * sizeof *envp);
			envp[ne++] = *e;
		}
		const char *conf = getenv("SLURM_CONF");
		struct buf conf_var = BUF_INIT;
		if (conf) {
			buf_printf(&conf_var, "SLURM_CONF=%s", conf);
			envp = xrealloc(envp, (ne + 2) * sizeof *envp);
			envp[ne++] = conf_var.data;
		}
		envp[ne] = NULL;
		int code = run_cmd(argv, envp, &result);
		char job_id[24] = "";
		if (code == 0 && result.data)
			snprintf(job_id, sizeof job_id, "%.*s", (int)strspn(result.data, "0123456789"),
				 result.data);
		if (!job_id[0]) {
			const char *said = result.data ? result.data : "";
			rc[i] = err_set(&err[i], code == -ENOENT ? ENOENT : EIO,
					"cannot submit worker %d to Slurm: %s%.*s", spec->id,
					code < 0 ? strerror(-code) : "sbatch: ",
					(int)strcspn(said, "\n"), code < 0 ? "" : said);
			failed++;
		} else {
			struct runner_job *job = xcalloc(1, sizeof *job);
			job->id = spec->id;
			snprintf(job->job_id, sizeof job->job_id, "%s", job_id);
			snprintf(job->state, sizeof job->state, "PENDING");
			pthread_mutex_lock(&s->lock);
			follow(s, job);
			pthread_mutex_unlock(&s->lock);
			out[i] = job;
			rc[i] = 0;
		}
		free(argv);
		free(envp);
		buf_free(&name);
		buf_free(&output);
		buf_free(&chdir);
		buf_free(&wrap);
		buf_free(&conf_var);
		buf_free(&result);
	}
	return failed;
}

static int order(struct slurm *s, const struct runner_job *job, int sig, bool frozen)
{
	struct slurm_order *o = xcalloc(1, sizeof *o);
	snprintf(o->job_id, sizeof o->job_id, "%s", job->job_id);
	o->sig = sig;
	o->frozen = frozen;
	pthread_mutex_lock(&s->lock);
	*s->orders_tail = o;
	s->orders_tail = &o->next;
	if (!s->started)
		s->started = pthread_create(&s->thread, NULL, slurm_main, s) == 0;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int slurm_signal(struct runner *base, struct runner_job *job, int sig)
{
	return order(slurm_of(base), job, sig, false);
}

static int slurm_freeze(struct runner *base, struct runner_job *job, bool frozen)
{
	return order(slurm_of(base), job, 0, frozen);
}

static ssize_t slurm_write_stdin(struct runner *base, struct runner_job *job, const void *data,
				 size_t len)
{
	return -EOPNOTSUPP;
}

static void slurm_release(struct runner *base, struct runner_job *job, struct runner_usage *used)
{
	unfollow(slurm_of(base), job);
	if (used)
		*used = (struct runner_usage){-1, -1};
}

static void slurm_forget(struct runner *base, struct runner_job *job)
{
	unfollow(slurm_of(base), job);
}

/* The job id the store kept: followed again; its next poll says whether
 * Slurm still knows it. */
static enum runner_found slurm_adopt(struct runner *base, int id, const char *ref,
				     struct runner_job **out, int *wstatus)
{
	struct slurm *s = slurm_of(base);
	*out = NULL;
	if (!ref || !ref[0] || strspn(ref, "0123456789") != strlen(ref))
		return RUNNER_GONE;
	struct runner_job *job = xcalloc(1, sizeof *job);
	job->id = id;
	snprintf(job->job_id, sizeof job->job_id, "%s", ref);
	pthread_mutex_lock(&s->lock);
	follow(s, job);
	pthread_mutex_unlock(&s->lock);
	*out = job;
	return RUNNER_RUNNING;
}

static void slurm_adopt_end(struct runner *base)
{
}

static bool slurm_queued(struct runner *base, const struct runner_job *job)
{
	struct slurm *s = slurm_of(base);
	pthread_mutex_lock(&s->lock);
	bool pending = !strcmp(job->state, "PENDING");
	pthread_mutex_unlock(&s->lock);
	return pending;
}

static const char *slurm_ref(const struct runner_job *job)
{
	return job->job_id;
}

static void slurm_describe(struct runner *base, const struct runner_job *job, const char *ref,
			   struct buf *b)
{
	struct slurm *s = slurm_of(base);
	jw_lit(b, ",\"slurm\":");
	if (!job) {
		/* ended: its id stays, its queue state is gone */
		jw_lit(b, "{\"job_id\":");
		jw_str_or_null(b, ref);
		jw_lit(b, ",\"state\":null,\"reason\":null}");
		return;
	}
	pthread_mutex_lock(&s->lock);
	jw_lit(b, "{\"job_id\":");
	jw_str(b, job->job_id);
	jw_lit(b, ",\"state\":");
	jw_str_or_null(b, job->state);   /* "": not polled yet (adopted) */
	jw_lit(b, ",\"reason\":");
	jw_str_or_null(b, job->reason[0] && strcmp(job->reason, "None") ? job->reason : NULL);
	pthread_mutex_unlock(&s->lock);
	buf_putc(b, '}');
}

static void slurm_destroy(struct runner *base, bool keep)
{
	struct slurm *s = slurm_of(base);
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	if (s->started)
		pthread_join(s->thread, NULL);
	/* jobs stay with the cluster: the next daemon adopts them by their id */
	(void)keep;
	for (struct slurm_order *o = s->orders, *next; o; o = next) {
		next = o->next;
		free(o);
	}
	for (struct runner_job *j = s->jobs, *next; j; j = next) {
		next = j->next;
		free(j);
	}
	runner_base_fini(&s->base);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	free(s);
}

static const struct runner_ops slurm_ops = {
	.name = "slurm",
	.start = slurm_start,
	.signal = slurm_signal,
	.freeze = slurm_freeze,
	.write_stdin = slurm_write_stdin,
	.release = slurm_release,
	.forget = slurm_forget,
	.adopt = slurm_adopt,
	.adopt_end = slurm_adopt_end,
	.queued = slurm_queued,
	.ref = slurm_ref,
	.describe = slurm_describe,
	.destroy = slurm_destroy,
};

int runner_slurm_create(int poll_ms, struct runner **out, struct orch_err *err)
{
	struct slurm *s = xcalloc(1, sizeof *s);
	int rc = runner_base_init(&s->base, &slurm_ops);
	if (rc) {
		free(s);
		return err_set(err, EIO, "eventfd: %s", strerror(-rc));
	}
	s->poll_ms = poll_ms > 0 ? poll_ms : 1000;
	s->orders_tail = &s->orders;
	pthread_mutex_init(&s->lock, NULL);
	cond_init_mono(&s->wake);
	*out = &s->base;
	return 0;
}
