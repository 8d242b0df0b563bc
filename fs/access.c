/* access: the checks of access.h, made before the daemon creates its state
 * directory, so that a user without FUSE gets the fix instead of a half-made
 * state directory and libfuse's terse "fuse: device not found". */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access.h"

#define FUSE_DEVICE "/dev/fuse"
#define FUSERMOUNT "fusermount3"

static const char *group_name(gid_t gid, char *num, size_t size)
{
	struct group *g = getgrgid(gid);
	if (g)
		return g->gr_name;
	snprintf(num, size, "%u", (unsigned)gid);
	return num;
}

static int check_device(FILE *out)
{
	int fd = open(FUSE_DEVICE, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	int e = errno;
	struct stat st;
	if (stat(FUSE_DEVICE, &st) != 0) {
		fprintf(out, "orchfs: %s: %s\n"
			     "  fix: install fuse3 (Debian: apt-get install fuse3), or load the module: "
			     "modprobe fuse; in a container, give it the device (--device /dev/fuse)\n",
			FUSE_DEVICE, strerror(e));
		return -1;
	}
	char num[16];
	struct passwd *pw = getpwuid(st.st_uid);
	const char *grp = group_name(st.st_gid, num, sizeof num);
	fprintf(out, "orchfs: cannot open %s read-write: %s (mode %04o, %s:%s)\n", FUSE_DEVICE,
		strerror(e), (unsigned)(st.st_mode & 07777), pw ? pw->pw_name : "?", grp);
	if (st.st_gid != 0 && (st.st_mode & 060) == 060)
		fprintf(out, "  fix: add yourself to the group owning it (as root: usermod -aG %s "
			     "USER, then log in again), or as root: chmod 0666 %s\n", grp, FUSE_DEVICE);
	else
		fprintf(out, "  fix: as root, chmod 0666 %s (the mode the fuse3 package gives it)\n",
			FUSE_DEVICE);
	return -1;
}

/* fusermount3 mounts and unmounts for a user, so it must be setuid root;
 * orchfs also runs it by name to clear a stale mount, hence PATH. */
static int check_fusermount(FILE *out)
{
	const char *path = getenv("PATH");
	char file[PATH_MAX];
	for (const char *p = path ? path : ""; p && *p;) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > 0 && n + sizeof FUSERMOUNT + 1 < sizeof file) {
			snprintf(file, sizeof file, "%.*s/%s", (int)n, p, FUSERMOUNT);
			struct stat st;
			if (stat(file, &st) == 0 && S_ISREG(st.st_mode) && access(file, X_OK) == 0) {
				if (st.st_uid == 0 && (st.st_mode & S_ISUID))
					return 0;
				fprintf(out, "orchfs: %s is not setuid root, so it cannot mount for you\n"
					     "  fix: as root, chown root %s && chmod u+s %s (as the fuse3 "
					     "package installs it)\n", file, file, file);
				return -1;
			}
		}
		p = end ? end + 1 : NULL;
	}
	fprintf(out, "orchfs: %s is not in PATH (%s)\n"
		     "  fix: install fuse3 (Debian: apt-get install fuse3), or add the directory "
		     "holding %s to PATH\n", FUSERMOUNT, path ? path : "unset", FUSERMOUNT);
	return -1;
}

int fs_access_check(FILE *out)
{
	if (geteuid() == 0)
		return 0;
	int dev = check_device(out);
	int prog = check_fusermount(out);
	return dev || prog ? -1 : 0;
}
