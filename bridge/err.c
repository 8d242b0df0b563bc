/* err: errno names, HTTP statuses and the error object (README, "Errors"). */
#include "err.h"
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int errnum;
	const char *name;
	int status;
} err_table[] = {
	{EINVAL, "EINVAL", 400}, {ENOENT, "ENOENT", 404}, {EEXIST, "EEXIST", 409},
	{EBUSY, "EBUSY", 409},   {ELOOP, "ELOOP", 409},   {EFBIG, "EFBIG", 413},
	{EACCES, "EACCES", 403}, {EPERM, "EPERM", 403},   {EIO, "EIO", 500},
	{ENOTDIR, "ENOTDIR", 400}, {EISDIR, "EISDIR", 400}, {EAGAIN, "EAGAIN", 503},
	{ENOSPC, "ENOSPC", 507}, {EMFILE, "EMFILE", 503}, {ENOMEM, "ENOMEM", 500},
	{ERANGE, "ERANGE", 410},   /* a replay from before the oldest kept event */
	{EINTR, "EINTR", 503},     {ENOTSUP, "ENOTSUP", 405},
	{EOVERFLOW, "EOVERFLOW", 422},   /* a total that would pass what orchfs counts exactly */
};

int err_set(struct orch_err *e, int errnum, const char *fmt, ...)
{
	va_list ap;
	e->errnum = errnum;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	return -errnum;
}

const char *err_name(int errnum)
{
	for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
		if (err_table[i].errnum == errnum)
			return err_table[i].name;
	return "EIO";
}

int err_from_name(const char *name)
{
	for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
		if (strcmp(err_table[i].name, name) == 0)
			return err_table[i].errnum;
	return 0;
}

int err_http_status(int errnum)
{
	for (size_t i = 0; i < sizeof err_table / sizeof err_table[0]; i++)
		if (err_table[i].errnum == errnum)
			return err_table[i].status;
	return 500;
}

void err_render(const struct orch_err *e, const char *path, struct buf *out)
{
	err_render_status(e, path, err_http_status(e->errnum), out);
}

void err_render_status(const struct orch_err *e, const char *path, int status, struct buf *out)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *obj = cJSON_AddObjectToObject(root, "error");
	cJSON_AddNumberToObject(obj, "status", status);
	cJSON_AddStringToObject(obj, "errno", err_name(e->errnum));
	cJSON_AddStringToObject(obj, "message", e->message[0] ? e->message : strerror(e->errnum));
	cJSON_AddStringToObject(obj, "path", path);
	/* when it failed, as events tell time: last_error outlives a restart */
	json_add_time(obj, "ts", time_now_ms());
	json_emit(root, out);
}
