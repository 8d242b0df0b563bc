/* test_auth: the token file, constant-time comparison, Bearer parsing, and
 * the Host and Origin checks that keep other sites and rebinding away. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth.h"

static void test_token_file(void **state)
{
	char dir[] = "/tmp/orchfs-auth-XXXXXX", path[64], token[AUTH_TOKEN_HEX + 1], again[AUTH_TOKEN_HEX + 1];
	struct orch_err err = {0};
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/token", dir);
	assert_int_equal(auth_load_token(path, false, token, &err), -ENOENT);
	assert_int_equal(auth_load_token(path, true, token, &err), 0);
	assert_int_equal(strlen(token), 64);
	assert_int_equal(strspn(token, "0123456789abcdef"), 64);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* made once: a second start reads the same token */
	assert_int_equal(auth_load_token(path, true, again, &err), 0);
	assert_string_equal(token, again);
	/* others must not be able to read it */
	chmod(path, 0644);
	assert_int_equal(auth_load_token(path, true, again, &err), -EACCES);
	chmod(path, 0600);
	/* a token of one's own, of a sane length */
	FILE *f = fopen(path, "w");
	fputs("short\n", f);
	fclose(f);
	assert_int_equal(auth_load_token(path, false, again, &err), -EINVAL);
	f = fopen(path, "w");
	fputs("my-own-token-0123456789\n", f);
	fclose(f);
	assert_int_equal(auth_load_token(path, false, again, &err), 0);
	assert_string_equal(again, "my-own-token-0123456789");
	unlink(path);
	rmdir(dir);
}

static void test_compare_and_bearer(void **state)
{
	const char *t = "0123456789abcdef0123456789abcdef";
	assert_true(auth_token_equal(t, t, strlen(t)));
	assert_false(auth_token_equal(t, "0123456789abcdef0123456789abcdeX", 32));
	assert_false(auth_token_equal(t, t, 31));
	assert_false(auth_token_equal(t, "0123456789abcdef0123456789abcdef0", 33));
	assert_false(auth_token_equal(t, "", 0));
	size_t n;
	const char *b = auth_bearer("Bearer abc ", &n);
	assert_non_null(b);
	assert_int_equal(n, 3);
	assert_memory_equal(b, "abc", 3);
	assert_non_null(auth_bearer("bearer  xyz", &n));
	assert_null(auth_bearer("Basic abc", &n));
	assert_null(auth_bearer("Bearer ", &n));
}

static void test_host(void **state)
{
	assert_true(auth_host_ok("127.0.0.1:8999", "127.0.0.1", 8999));
	assert_true(auth_host_ok("localhost:8999", "127.0.0.1", 8999));
	assert_true(auth_host_ok("[::1]:8999", "127.0.0.1", 8999));
	assert_true(auth_host_ok("LOCALHOST:8999", "127.0.0.1", 8999));
	assert_false(auth_host_ok("127.0.0.1:9000", "127.0.0.1", 8999));
	assert_false(auth_host_ok("127.0.0.1", "127.0.0.1", 8999));
	assert_false(auth_host_ok("evil.example:8999", "127.0.0.1", 8999));
	assert_false(auth_host_ok("localhost.evil.example:8999", "127.0.0.1", 8999));
	assert_false(auth_host_ok("127.0.0.1.evil.example:8999", "127.0.0.1", 8999));
	assert_false(auth_host_ok("127.evil.example:8999", "127.0.0.1", 8999));
	assert_true(auth_host_ok("127.0.0.2:8999", "127.0.0.1", 8999));
	assert_false(auth_host_ok("127.0.0.1:8999x", "127.0.0.1", 8999));
	assert_false(auth_host_ok("[::1:8999", "127.0.0.1", 8999));
	/* on a public address, its own name and address literals only */
	assert_true(auth_host_ok("192.0.2.7:8999", "192.0.2.7", 8999));
	assert_false(auth_host_ok("localhost:8999", "192.0.2.7", 8999));
	assert_true(auth_host_ok("192.0.2.7:8999", "0.0.0.0", 8999));
	assert_false(auth_host_ok("rebind.example:8999", "0.0.0.0", 8999));
	assert_false(auth_host_ok("192.0.2.7.rebind.example:8999", "0.0.0.0", 8999));
	assert_true(auth_host_ok("[2001:db8::1]:8999", "::", 8999));
	assert_true(auth_is_loopback("127.0.0.1"));
	assert_true(auth_is_loopback("::1"));
	assert_false(auth_is_loopback("0.0.0.0"));
	assert_false(auth_is_loopback("192.0.2.7"));
}

static void test_origin(void **state)
{
	int ports[] = {8999, 9000};
	assert_true(auth_origin_ok("http://127.0.0.1:8999", "127.0.0.1", ports, 2));
	assert_true(auth_origin_ok("http://localhost:9000", "127.0.0.1", ports, 2));
	assert_true(auth_origin_ok("https://127.0.0.1:9000", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("http://evil.example", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("http://127.0.0.1:1234", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("null", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("http://127.0.0.1:8999/x", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("file://", "127.0.0.1", ports, 2));
	assert_false(auth_origin_ok("https://127.0.0.1.evil.example:8999", "127.0.0.1", ports, 2));
}

static void test_origin_option(void **state)
{
	char why[200];
	const char *good[] = {"http://localhost:3000", "https://app.example", "http://127.0.0.1:1",
			      "HTTP://LocalHost:65535", "http://[::1]:3000", "https://a-b.c"};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		assert_true(auth_origin_valid(good[i], why, sizeof why));
	const char *bad[] = {"localhost:3000", "http://", "http://x/", "http://x:3000/app",
			     "http://x:0", "http://x:65536", "http://x:", "http://x:3000?a",
			     "ftp://x", "http://u@x", "http://[nope]:1", "null", "*", "http://x:1234567"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		why[0] = '\0';
		assert_false(auth_origin_valid(bad[i], why, sizeof why));
		assert_true(why[0] != '\0');
	}
	const char *list[] = {"http://localhost:3000", "https://app.example"};
	assert_string_equal(auth_origin_listed("http://LOCALHOST:3000", list, 2), "http://LOCALHOST:3000");
	assert_non_null(auth_origin_listed("https://app.example", list, 2));
	assert_null(auth_origin_listed("http://localhost:3001", list, 2));
	assert_null(auth_origin_listed("http://localhost:3000/", list, 2));
	assert_null(auth_origin_listed(NULL, list, 2));
	assert_null(auth_origin_listed("http://localhost:3000", list, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_file),
		cmocka_unit_test(test_compare_and_bearer),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_origin),
		cmocka_unit_test(test_origin_option),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
