/* web: the dashboard's files (README, "The dashboard"), served as they are
 * from --web-root to anyone whose Host is ours: they hold no secret, and the
 * page asks for the token itself. Everything under /api/ needs the token.
 *   curl http://127.0.0.1:8999/            -> index.html
 *   curl http://127.0.0.1:8999/config.json -> {"ws_port":9000,"tls":false}
 * A file is what a regular file under the root resolves to: no listing, no
 * ".." and no symlink leading out of the root; it is sent from its file by
 * the kernel, as a log is (http.c). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static const struct {
	const char *ext, *type;
} web_types[] = {
	{".html", "text/html; charset=utf-8"},
	{".js", "text/javascript; charset=utf-8"},
	{".mjs", "text/javascript; charset=utf-8"},
	{".css", "text/css; charset=utf-8"},
	{".json", "application/json"},
	{".svg", "image/svg+xml"},
	{".png", "image/png"},
	{".ico", "image/x-icon"},
	{".txt", "text/plain; charset=utf-8"},
};

const char *web_content_type(const char *path)
{
	const char *dot = strrchr(path, '.');
	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < sizeof web_types / sizeof web_types[0]; i++)
			if (strcmp(dot, web_types[i].ext) == 0)
				return web_types[i].type;
	return "application/octet-stream";
}

/* A path the page may name: segments of printable ASCII, none of them "",
 * "." or "..", no backslash. lws has folded "/a/../b" already; what is left
 * (an encoded "..", a doubled slash) is refused rather than interpreted. */
static bool web_path_ok(const char *rel)
{
	if (!*rel)
		return false;
	for (const char *seg = rel; *seg;) {
		const char *end = strchr(seg, '/');
		size_t n = end ? (size_t)(end - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)seg[i] < 0x21 || (unsigned char)seg[i] > 0x7e || seg[i] == '\\')
				return false;
		seg += n;
		if (*seg == '/')
			seg++;
		if (end && !*seg)
			return false;   /* a trailing slash names a directory */
	}
	return true;
}

int web_open(const char *root, const char *uri, int *fd, size_t *len)
{
	*fd = -1;
	*len = 0;
	if (!root)
		return -ENOENT;
	const char *rel = uri[0] == '/' ? uri + 1 : uri;
	if (!*rel)
		rel = "index.html";
	if (strlen(rel) > 512 || !web_path_ok(rel))
		return -ENOENT;
	char want[PATH_MAX + 600], real[PATH_MAX];
	snprintf(want, sizeof want, "%s/%s", root, rel);
	/* root is a realpath: what resolves outside it (a symlink out) is not ours */
	size_t rl = strlen(root);
	if (rl == 1)
		rl = 0;   /* root "/": every path is under it */
	if (!realpath(want, real) || strncmp(real, root, rl) != 0 || real[rl] != '/')
		return -ENOENT;
	int f = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;
	if (f < 0)
		return -ENOENT;
	if (fstat(f, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(f);
		return -ENOENT;   /* a directory is not listed */
	}
	*fd = f;
	*len = (size_t)st.st_size;
	return 0;
}

void web_config(const struct api *a, struct buf *out)
{
	/* the page finds the WebSocket listener on its own host, at this port */
	if (a->cfg.ws.off)
		buf_printf(out, "{\"ws_port\":null,\"tls\":%s}\n", a->cfg.tls_cert ? "true" : "false");
	else
		buf_printf(out, "{\"ws_port\":%d,\"tls\":%s}\n", a->cfg.ws.port,
			   a->cfg.tls_cert ? "true" : "false");
}

int api_web_root(const char *dir, char **out, struct orch_err *err)
{
	*out = NULL;
	char real[PATH_MAX];
	struct stat st;
	if (!realpath(dir, real))
		return err_set(err, errno, "%s: %s", dir, strerror(errno));
	char index[PATH_MAX + 16];
	snprintf(index, sizeof index, "%s/index.html", real);
	if (stat(index, &st) < 0 || !S_ISREG(st.st_mode))
		return err_set(err, ENOENT, "%s has no index.html", dir);
	*out = xstrdup(real);
	return 0;
}
