/* test_logpool: worker log files made ahead: a take finds its file made and
 * empty, a file made at the take itself is never truncated by the pool after,
 * and a stop removes what was made ahead and not taken. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "logpool.h"

static char dir[64];

static int dir_setup(void **state)
{
	strcpy(dir, "/tmp/orchfs-logpool-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int dir_teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) ? -1 : 0;
}

static const char *path_of(int id)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/%d.log", dir, id);
	return p;
}

static off_t size_of(int id)
{
	struct stat st;
	return stat(path_of(id), &st) == 0 ? st.st_size : -1;
}

static int count_files(void)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* waits (bounded) until the pool has made the file of id */
static bool made(int id)
{
	for (int i = 0; i < 500 && size_of(id) < 0; i++)
		usleep(2000);
	return size_of(id) == 0;
}

static void write_to(int fd, const char *s)
{
	assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
	close(fd);
}

static void test_made_ahead(void **state)
{
	/* left over from a store that was removed: made anew */
	int stale = open(path_of(5), O_WRONLY | O_CREAT, 0600);
	write_to(stale, "old output\n");
	struct log_pool *p = logpool_start(dir, 5);
	assert_non_null(p);
	assert_true(made(6));
	assert_true(made(20));
	assert_int_equal(size_of(5), 0);
	int fd = logpool_take(p, 5, path_of(5));
	assert_true(fd >= 0);
	write_to(fd, "one\n");
	/* appends, whatever the offset: a worker's children share it */
	fd = logpool_take(p, 6, path_of(6));
	assert_true(fd >= 0);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	write_to(fd, "six\n");
	assert_int_equal(size_of(5), 4);
	assert_int_equal(size_of(6), 4);

	/* far ahead of the pool: made at the take, and the pool, which goes on
	 * from there, never truncates it */
	fd = logpool_take(p, 1000, path_of(1000));
	assert_true(fd >= 0);
	write_to(fd, "thousand\n");
	assert_true(made(1001));
	assert_int_equal(size_of(1000), 9);
	logpool_stop(p);
	/* what was taken stays, what was made ahead goes */
	assert_int_equal(size_of(5), 4);
	assert_int_equal(size_of(1000), 9);
	assert_int_equal(size_of(1001), -1);
	assert_int_equal(size_of(7), -1);
	assert_int_equal(count_files(), 3);
}

/* Without a pool, a take makes the file itself; an impossible one is -errno. */
static void test_no_pool(void **state)
{
	int fd = logpool_take(NULL, 3, path_of(3));
	assert_true(fd >= 0);
	write_to(fd, "x");
	assert_int_equal(size_of(3), 1);
	assert_true(logpool_take(NULL, 4, "/nonexistent-dir/4.log") < 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_made_ahead, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_no_pool, dir_setup, dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
