/*
 * Named network namespaces and per-namespace work (see netns.h), done the way
 * ip-netns(8) does it so that `ip netns` lists and enters ours.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include "core/io.h"
#include "core/net/netns.h"
#include "core/util.h"

/*
 * Make /run/netns a shared mount point, so that the bind mounts below show
 * up in every mount namespace (ip-netns does the same).
 */
static int prepare_run_dir(void)
{
	if (mkdir(NETNS_RUN_DIR, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	if (mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC, NULL) < 0)
		return -errno;
	if (mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC, NULL) < 0)
		return -errno;
	return 0;
}

struct create_ctx {
	const char *path;
};

static void *create_thread(void *arg)
{
	struct create_ctx *ctx = arg;

	if (unshare(CLONE_NEWNET) < 0)
		return (void *)(intptr_t)-errno;
	if (mount("/proc/thread-self/ns/net", ctx->path, "none", MS_BIND, NULL) < 0)
		return (void *)(intptr_t)-errno;
	return (void *)0;
}

int netns_create(const char *name)
{
	char path[256];
	struct create_ctx ctx = { .path = path };
	pthread_t th;
	void *ret;
	int fd, r;

	if (!name || !*name || strchr(name, '/') || strlen(name) > 200)
		return -EINVAL;
	r = prepare_run_dir();
	if (r < 0)
		return r;
	snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	close(fd);
	r = -pthread_create(&th, NULL, create_thread, &ctx);
	if (r == 0) {
		pthread_join(th, &ret);
		r = (int)(intptr_t)ret;
	}
	if (r < 0)
		(void)unlink(path);
	return r;
}

int netns_delete(const char *name)
{
	char path[256];

	snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
	(void)umount2(path, MNT_DETACH);
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

bool netns_exists(const char *name)
{
	char path[256];

	snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
	return access(path, F_OK) == 0;
}

int netns_open(const char *name)
{
	char path[256];
	int fd;

	if (!name || !*name || strchr(name, '/'))
		return -EINVAL;
	snprintf(path, sizeof path, NETNS_RUN_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* A plain file left behind by an interrupted create is no namespace. */
	struct statfs st;
	if (fstatfs(fd, &st) < 0 || st.f_type != NSFS_MAGIC) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

static bool numbered(const char *s, const char *prefix)
{
	size_t pl = strlen(prefix);

	if (strncmp(s, prefix, pl) != 0 || !s[pl])
		return false;
	for (const char *p = s + pl; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	return true;
}

int netns_list_numbered(const char *prefix, char ***names, size_t *n)
{
	DIR *d = opendir(NETNS_RUN_DIR);
	struct dirent *de;
	char **v = NULL;
	size_t c = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d)) && c < 65536) {
		if (!numbered(de->d_name, prefix))
			continue;
		v = xreallocarray(v, c + 1, sizeof *v);
		v[c++] = xstrdup(de->d_name);
	}
	closedir(d);
	*names = v;
	*n = c;
	return 0;
}

void netns_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

struct run_ctx {
	int nsfd;
	int (*fn)(void *);
	void *arg;
	int r;
};

static void *run_thread(void *arg)
{
	struct run_ctx *ctx = arg;

	if (setns(ctx->nsfd, CLONE_NEWNET) < 0) {
		ctx->r = -errno;
		return NULL;
	}
	ctx->r = ctx->fn(ctx->arg);
	return NULL;
}

int netns_run(int nsfd, int (*fn)(void *arg), void *arg)
{
	struct run_ctx ctx = { .nsfd = nsfd, .fn = fn, .arg = arg };
	pthread_t th;
	int r;

	r = pthread_create(&th, NULL, run_thread, &ctx);
	if (r)
		return -r;
	pthread_join(th, NULL);
	return ctx.r;
}

int net_sysctl_read(const char *path, char *buf, size_t len)
{
	ssize_t n = read_small_file(path, buf, len);

	return n < 0 ? (int)n : 0;
}

int net_sysctl_write(const char *path, const char *value)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t l = strlen(value);

	if (fd < 0)
		return -errno;
	if (write(fd, value, l) != (ssize_t)l)
		return -errno;
	return 0;
}
