/* auth: token file, constant-time comparison, Host and Origin checks. */
#include "auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"

static int make_token(const char *path, struct orch_err *err)
{
	unsigned char raw[AUTH_TOKEN_HEX / 2];
	if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
		return err_set(err, EIO, "no randomness for a token: %s", strerror(errno));
	char hex[AUTH_TOKEN_HEX + 2];
	for (size_t i = 0; i < sizeof raw; i++)
		snprintf(hex + 2 * i, 3, "%02x", raw[i]);
	hex[AUTH_TOKEN_HEX] = '\n';
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? 0 : err_set(err, EACCES, "cannot create %s: %s", path, strerror(errno));
	ssize_t w = write(fd, hex, AUTH_TOKEN_HEX + 1);
	int rc = close(fd);
	if (w != AUTH_TOKEN_HEX + 1 || rc) {
		unlink(path);
		return err_set(err, EIO, "cannot write %s", path);
	}
	return 0;
}

int auth_load_token(const char *path, bool create, char token[AUTH_TOKEN_HEX + 1],
		    struct orch_err *err)
{
	if (create) {
		int rc = make_token(path, err);
		if (rc)
			return rc;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, errno == ENOENT ? ENOENT : EACCES, "token file %s: %s", path,
			       strerror(errno));
	struct stat st;
	if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
		close(fd);
		return err_set(err, EACCES, "token file %s may be read by others (mode %03o); chmod 600 it",
			       path, (unsigned)(st.st_mode & 0777));
	}
	char b[256];
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n < 0)
		return err_set(err, EIO, "cannot read %s", path);
	b[n] = '\0';
	size_t len = strcspn(b, "\r\n");
	/* Any token of 16..64 printable non-space bytes; ours are 64 hex digits. */
	if (len < 16 || len > AUTH_TOKEN_HEX)
		return err_set(err, EINVAL, "token file %s must hold one token of 16 to 64 characters", path);
	for (size_t i = 0; i < len; i++)
		if (b[i] <= ' ' || b[i] > '~')
			return err_set(err, EINVAL, "token file %s holds a character that is not printable", path);
	memcpy(token, b, len);
	token[len] = '\0';
	return 0;
}

bool auth_token_equal(const char *expected, const char *given, size_t given_len)
{
	size_t n = strlen(expected);
	/* Every byte of the expected token is looked at whatever the input. */
	unsigned char diff = (unsigned char)(given_len != n);
	for (size_t i = 0; i < n; i++) {
		unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
		diff |= (unsigned char)(g ^ (unsigned char)expected[i]);
	}
	return diff == 0;
}

void auth_worker_token(const char *secret, int worker, char out[AUTH_WORKER_TOKEN_MAX])
{
	char msg[48];
	int n = snprintf(msg, sizeof msg, "orchfs worker %d", worker);
	uint8_t mac[SHA256_DIGEST_LEN];
	hmac_sha256(secret, strlen(secret), msg, (size_t)n, mac);
	char hex[65];
	sha256_digest_hex(mac, hex);
	snprintf(out, AUTH_WORKER_TOKEN_MAX, "w%d.%s", worker, hex);
}

int auth_token_owner(const char *secret, const char *given, size_t len)
{
	if (len > 1 && given[0] == 'w' && given[1] >= '1' && given[1] <= '9') {
		/* w<ID>.: at most 9 digits, so that the id is an int */
		int id = 0;
		size_t i = 1;
		for (; i < len && i < 10 && given[i] >= '0' && given[i] <= '9'; i++)
			id = id * 10 + (given[i] - '0');
		if (i < len && given[i] == '.') {
			char mine[AUTH_WORKER_TOKEN_MAX];
			auth_worker_token(secret, id, mine);
			return auth_token_equal(mine, given, len) ? id : -1;
		}
		return -1;
	}
	return auth_token_equal(secret, given, len) ? 0 : -1;
}

const char *auth_bearer(const char *header, size_t *len)
{
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return NULL;
	const char *t = header + 7;
	while (*t == ' ')
		t++;
	size_t n = strlen(t);
	while (n && (t[n - 1] == ' ' || t[n - 1] == '\r'))
		n--;
	*len = n;
	return n ? t : NULL;
}

/* An address literal, not a name: "127.0.0.1.evil.example" is a name. */
static bool is_ipv4(const char *s)
{
	struct in_addr a;
	return inet_pton(AF_INET, s, &a) == 1;
}

static bool is_ipv6(const char *s)
{
	struct in6_addr a;
	return inet_pton(AF_INET6, s, &a) == 1;
}

bool auth_is_loopback(const char *addr)
{
	return (strncmp(addr, "127.", 4) == 0 && is_ipv4(addr)) || strcmp(addr, "::1") == 0 ||
	       strcmp(addr, "[::1]") == 0 || strcmp(addr, "localhost") == 0;
}

bool auth_host_ok(const char *host, const char *listen_addr, int port)
{
	char name[256];
	const char *colon;
	if (host[0] == '[') {
		const char *end = strchr(host, ']');
		if (!end || (size_t)(end - host) >= sizeof name)
			return false;
		snprintf(name, sizeof name, "%.*s", (int)(end - host - 1), host + 1);
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return false;
	} else {
		colon = strrchr(host, ':');
		size_t n = colon ? (size_t)(colon - host) : strlen(host);
		if (n >= sizeof name)
			return false;
		snprintf(name, sizeof name, "%.*s", (int)n, host);
	}
	/* Browsers omit the default port only; ours never is 80. */
	if (!colon || atoi(colon + 1) != port)
		return false;
	for (const char *p = colon + 1; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	if (strcasecmp(name, listen_addr) == 0)
		return true;
	bool any = strcmp(listen_addr, "0.0.0.0") == 0 || strcmp(listen_addr, "::") == 0;
	if ((auth_is_loopback(listen_addr) || any) &&
	    (strcasecmp(name, "localhost") == 0 || auth_is_loopback(name)))
		return true;
	/* Listening on every address, any address literal of ours is fine: a DNS
	 * rebinding attack needs a name, and names other than localhost are refused. */
	return any && (is_ipv4(name) || is_ipv6(name));
}

bool auth_origin_ok(const char *origin, const char *listen_addr, const int *ports, size_t n)
{
	const char *p = NULL;
	if (strncasecmp(origin, "http://", 7) == 0)
		p = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		p = origin + 8;
	if (!p || strchr(p, '/'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (ports[i] > 0 && auth_host_ok(p, listen_addr, ports[i]))
			return true;
	return false;
}

bool auth_origin_valid(const char *origin, char *why, size_t whysize)
{
	const char *p = NULL;
	if (strncasecmp(origin, "http://", 7) == 0)
		p = origin + 7;
	else if (strncasecmp(origin, "https://", 8) == 0)
		p = origin + 8;
	if (!p) {
		snprintf(why, whysize, "\"%.80s\" is not an origin: scheme://host[:port], the scheme "
			 "http or https (e.g. http://localhost:3000)", origin);
		return false;
	}
	if (strlen(origin) > 255) {
		snprintf(why, whysize, "an origin of more than 255 bytes");
		return false;
	}
	const char *h = p, *end;
	if (*h == '[') {
		end = strchr(h, ']');
		char v6[64];
		if (!end || (size_t)(end - h - 1) >= sizeof v6 ||
		    (snprintf(v6, sizeof v6, "%.*s", (int)(end - h - 1), h + 1), !is_ipv6(v6))) {
			snprintf(why, whysize, "\"%.80s\": a bracketed host must be an IPv6 address", origin);
			return false;
		}
		end++;
	} else {
		for (end = h; *end && (isalnum((unsigned char)*end) || *end == '.' || *end == '-'); end++)
			;
		if (end == h) {
			snprintf(why, whysize, "\"%.80s\" has no host: scheme://host[:port]", origin);
			return false;
		}
	}
	if (*end == ':') {
		const char *port = end + 1;
		long v = 0;
		for (end = port; *end >= '0' && *end <= '9' && end - port < 6; end++)
			v = v * 10 + (*end - '0');
		if (end == port || v < 1 || v > 65535 || (*end >= '0' && *end <= '9')) {
			snprintf(why, whysize, "\"%.80s\": the port must be a number from 1 to 65535", origin);
			return false;
		}
	}
	if (*end) {
		snprintf(why, whysize, "\"%.80s\": an origin has no path, query or anything after "
			 "the host and port (\"%.40s\" is extra)", origin, end);
		return false;
	}
	return true;
}

const char *auth_origin_listed(const char *origin, const char *const *list, size_t n)
{
	for (size_t i = 0; origin && i < n; i++)
		if (strcasecmp(origin, list[i]) == 0)
			return origin;   /* a browser compares Access-Control-Allow-Origin with its own spelling */
	return NULL;
}
