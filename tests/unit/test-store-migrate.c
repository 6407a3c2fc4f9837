/*
 * The storage API driven the way the migration engine drives it, in one
 * process and without a network: a source device exposed through FUSE that
 * a separate process keeps writing through MAP_SHARED, a full pass in
 * volatility order, dirty cycles (fsync, sync, dirty list, re-send), a
 * suspend (the writer stops), the final dirty list, and a destination
 * device with a waiting cache, also exposed through FUSE, where another
 * process reads while blocks still arrive (its requests are served first).
 * At the end both devices hold the same bytes. Also: a shared base, where
 * only the overlay's blocks travel. Needs root and /dev/fuse for the first
 * part.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/store/store.h"
#include "tests/tap.h"

#define BS (64u * 1024u)
#define NB 128u /* 8 MiB */

extern char **environ;
static char helper[512];
static char dir[] = "/tmp/test-store-migrate.XXXXXX";

static struct store_device *make_dev(const char *name, bool destination)
{
	char path[600];
	struct store_provider *f = NULL;
	struct store_device *d = NULL;

	snprintf(path, sizeof(path), "%s/%s.img", dir, name);
	if (store_file_open(path, STORE_FILE_CREATE, NB * BS, &f) < 0)
		return NULL;
	struct store_device_opts o = {.name = name, .block_size = BS, .destination = destination};
	if (store_device_new(&o, f, &d) < 0) {
		store_close(f);
		return NULL;
	}
	return d;
}

/* Start the helper with stdin/stdout on pipes; wait for its "ready". */
static pid_t spawn_piped(char *const argv[], int *in, int *out)
{
	int to[2], from[2];
	pid_t pid;
	posix_spawn_file_actions_t fa;
	char line[16];

	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	int r = posix_spawn(&pid, helper, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(to[0]);
	close(from[1]);
	if (r != 0) {
		close(to[1]);
		close(from[0]);
		return -1;
	}
	*in = to[1];
	if (out) {
		*out = from[0];
	} else {
		ssize_t n = read(from[0], line, sizeof(line));
		close(from[0]);
		if (n <= 0)
			return -1;
	}
	return pid;
}

static int wait_pid(pid_t pid)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Send one block from the source to the destination, as BLOCK messages do. */
static int send_block(struct store_device *src, struct store_device *dst, uint64_t b,
                      unsigned char *buf)
{
	ssize_t n = store_device_read_block(src, b, buf);
	if (n < 0)
		return (int)n;
	return store_device_deliver(dst, b, buf, (size_t)n);
}

struct link {
	pthread_mutex_t lock; /* one sender at a time, like one connection */
	struct store_device *src, *dst;
	unsigned long requests;
	int err;
	int efd; /* signalled on every request */
};

/* The priority lane: a destination reader's request is served at once. */
static void on_request(void *ctx, struct store_device *dev, uint64_t block)
{
	struct link *l = ctx;
	unsigned char *buf = malloc(BS);

	(void)dev;
	pthread_mutex_lock(&l->lock);
	l->requests++;
	store_volatility_remove(store_device_volatility(l->src), block);
	int r = buf ? send_block(l->src, l->dst, block, buf) : -ENOMEM;
	if (r < 0)
		l->err = r;
	pthread_mutex_unlock(&l->lock);
	free(buf);
	uint64_t one = 1;
	(void)!write(l->efd, &one, sizeof(one));
}

/* Wait for a request or for PID to exit, whichever comes first. */
static bool request_or_exit(struct link *l, pid_t pid)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p[2] = {{.fd = l->efd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};

	while (poll(p, pfd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR)
		;
	if (pfd >= 0)
		close(pfd);
	return p[0].revents & POLLIN;
}

static bool same_content(struct store_device *a, struct store_device *b)
{
	_cleanup_free_ unsigned char *x = malloc(BS), *y = malloc(BS);

	for (uint64_t i = 0; i < NB; i++) {
		if (store_read_at(store_device_stack(a), x, BS, i * BS) != BS ||
		    store_read_at(store_device_stack(b), y, BS, i * BS) != BS || memcmp(x, y, BS))
			return false;
	}
	return true;
}

static void test_live(void)
{
	struct store_device *src = make_dev("src", false), *dst = make_dev("dst", true);
	struct store_expose *es = NULL, *ed = NULL;
	char mdir[600];
	_cleanup_free_ unsigned char *buf = malloc(BS);
	struct link l = {.lock = PTHREAD_MUTEX_INITIALIZER,
	                 .src = src,
	                 .dst = dst,
	                 .efd = eventfd(0, EFD_CLOEXEC)};

	snprintf(mdir, sizeof(mdir), "%s/mnt", dir);
	struct store_expose_opts os = {
	    .kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = "source"};
	struct store_expose_opts od = {
	    .kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = "dest"};
	if (!ok(src && dst && store_expose_new(&os, &src, 1, &es) == 0 &&
	            store_expose_new(&od, &dst, 1, &ed) == 0,
	        "migrate: source and destination exposed through FUSE")) {
		store_expose_free(es);
		store_expose_free(ed);
		store_device_free(src);
		store_device_free(dst);
		return;
	}
	store_wait_set_request(store_device_wait(dst), on_request, &l);

	/* the "VM": keeps writing the source's memory through a shared mapping */
	char len[32];
	snprintf(len, sizeof(len), "%u", NB * BS);
	char *wargv[] = {helper, (char *)store_expose_path(es, 0), "mmap-loop", "0", len, "7",
	                 NULL};
	int win = -1;
	pid_t writer = spawn_piped(wargv, &win, NULL);
	ok(writer > 0, "migrate: a writer process maps the source and writes continuously");

	/* full pass, least volatile first */
	struct store_volatility *v = store_device_volatility(src);
	store_volatility_add_all(v);
	uint64_t b, sent = 0;
	int r = 0;
	while (store_volatility_next(v, &b) >= 0) {
		pthread_mutex_lock(&l.lock);
		r = send_block(src, dst, b, buf);
		pthread_mutex_unlock(&l.lock);
		if (r < 0)
			break;
		sent++;
	}
	is_int(sent, NB, "migrate: the full pass sends every block once");

	/* dirty cycles while the writer runs */
	uint64_t total_dirty = 0;
	for (int cycle = 0; cycle < 5; cycle++) {
		uint64_t *list = NULL;
		size_t n = 0;
		r = store_expose_flush(es, 0);
		if (r == 0)
			r = store_tracker_sync_list(store_device_tracker(src), &list, &n);
		if (r < 0)
			break;
		/* the dirty list travels first and invalidates before it is acknowledged */
		store_wait_invalidate(store_device_wait(dst), list, n);
		pthread_mutex_lock(&l.lock);
		for (size_t i = 0; i < n && r >= 0; i++)
			r = send_block(src, dst, list[i], buf);
		pthread_mutex_unlock(&l.lock);
		total_dirty += n;
		free(list);
	}
	ok(r >= 0 && total_dirty > 0,
	   "migrate: 5 dirty cycles re-sent %llu blocks written meanwhile",
	   (unsigned long long)total_dirty);

	/* suspend: the writer stops (its close writes its pages back), final list */
	close(win);
	is_int(wait_pid(writer), 0, "migrate: the writer stopped (suspend)");
	uint64_t *list = NULL;
	size_t n = 0;
	store_expose_flush(es, 0);
	store_tracker_sync_list(store_device_tracker(src), &list, &n);
	store_wait_invalidate(store_device_wait(dst), list, n);
	diag("final dirty list: %zu blocks", n);
	/* block 0 travels again too, so the reader below certainly waits for one block */
	uint64_t zero = 0;
	store_wait_invalidate(store_device_wait(dst), &zero, 1);
	store_expose_settle(ed); /* as before a VM loads: dropped pages are gone */

	/* post-copy: a reader on the destination reads everything while the final blocks arrive */
	char rlen[32];
	snprintf(rlen, sizeof(rlen), "%u", NB * BS);
	char *rargv[] = {helper, (char *)store_expose_path(ed, 0), "sum", "0", rlen, "0", NULL};
	int rin = -1, rout = -1;
	pid_t reader = spawn_piped(rargv, &rin, &rout);
	ok(request_or_exit(&l, reader),
	   "migrate: the destination reader blocks on a missing block and asks for it");
	pthread_mutex_lock(&l.lock);
	for (size_t i = 0; i < n && r >= 0; i++)
		r = send_block(src, dst, list[n - 1 - i],
		               buf); /* backwards: the reader asks for the front */
	pthread_mutex_unlock(&l.lock);
	free(list);
	is_int(store_wait_complete(store_device_wait(dst)), 0,
	       "migrate: the destination is complete");
	close(rin);
	char sum[64] = "";
	ssize_t got = read(rout, sum, sizeof(sum) - 1);
	close(rout);
	is_int(wait_pid(reader), 0, "migrate: the destination reader read the whole device");
	sum[got > 0 ? got : 0] = 0;
	pthread_mutex_lock(&l.lock);
	diag("destination requests served on the priority lane: %lu", l.requests);
	ok(l.err == 0 && l.requests > 0, "migrate: every requested block was delivered");
	pthread_mutex_unlock(&l.lock);

	ok(same_content(src, dst), "migrate: destination bytes equal the source's at suspend");
	/* the reader saw the final content too: compare its checksum with the source's */
	_cleanup_free_ unsigned char *all = malloc((size_t)NB * BS);
	uint64_t h = 1469598103934665603ull;
	store_read_at(store_device_stack(src), all, (size_t)NB * BS, 0);
	for (size_t i = 0; i < (size_t)NB * BS; i++)
		h = (h ^ all[i]) * 1099511628211ull;
	char want[64];
	snprintf(want, sizeof(want), "%016llx\n", (unsigned long long)h);
	is_str(sum, want, "migrate: what the destination reader saw is the source's content");

	store_expose_free(es);
	store_expose_free(ed);
	store_device_free(src);
	store_device_free(dst);
	close(l.efd);
}

/* A shared base: only blocks in the source's overlay travel. */
static void test_shared_base(void)
{
	char base[600], sov[600], sst[600], dov[600], dst_state[600];
	_cleanup_free_ unsigned char *buf = malloc(BS);
	struct store_provider *sp = NULL, *dp = NULL;
	struct store_device *src = NULL, *dst = NULL;

	snprintf(base, sizeof(base), "%s/base.img", dir);
	snprintf(sov, sizeof(sov), "%s/src.ov", dir);
	snprintf(sst, sizeof(sst), "%s/src.state", dir);
	snprintf(dov, sizeof(dov), "%s/dst.ov", dir);
	snprintf(dst_state, sizeof(dst_state), "%s/dst.state", dir);
	int fd = open(base, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	for (uint64_t i = 0; i < NB; i++) {
		memset(buf, (int)(i & 0xff), BS);
		(void)!write(fd, buf, BS);
	}
	close(fd);

	struct store_stack_opts so = {.base = base, .overlay = sov, .state = sst, .block_size = BS};
	struct store_stack_opts dso = {
	    .base = base, .overlay = dov, .state = dst_state, .block_size = BS};
	struct store_device_opts o = {.name = "disk", .block_size = BS};
	if (!ok(store_stack_open(&so, &sp) == 0 && store_device_new(&o, sp, &src) == 0,
	        "shared: source over base + overlay"))
		return;
	memset(buf, 0xee, 300);
	store_device_write(src, buf, 300, 5 * BS + 7);
	store_device_write(src, buf, 300, 77 * BS);

	o.destination = true;
	if (!ok(store_stack_open(&dso, &dp) == 0 && store_device_new(&o, dp, &dst) == 0,
	        "shared: destination over the same base with its own overlay")) {
		store_device_free(src);
		return;
	}
	struct store_bitmap present;
	store_overlay_present(store_device_stack(src), &present);
	/* "what you already have": everything not in the overlay */
	struct store_bitmap have;
	store_bitmap_init(&have, NB);
	for (uint64_t b = 0; b < NB; b++)
		if (!store_bitmap_test(&present, b))
			store_bitmap_set(&have, b);
	store_wait_mark_present(store_device_wait(dst), &have);
	uint64_t sent = 0;
	for (uint64_t b = store_bitmap_next(&present, 0); b != UINT64_MAX;
	     b = store_bitmap_next(&present, b + 1)) {
		send_block(src, dst, b, buf);
		sent++;
	}
	is_int(sent, 2, "shared: only the 2 changed blocks are sent");
	is_int(store_wait_complete(store_device_wait(dst)), 0,
	       "shared: the destination is complete");
	ok(same_content(src, dst), "shared: and equal to the source");
	store_bitmap_free(&present);
	store_bitmap_free(&have);
	store_device_free(src);
	store_device_free(dst);
	struct stat st;
	ok(stat(dov, &st) == 0 && st.st_blocks * 512 <= 2 * BS,
	   "shared: the destination overlay stores only those blocks");
}

/* Are all pages of block B of the mapping M in the page cache? */
static bool cached(void *m, uint64_t b)
{
	long pg = sysconf(_SC_PAGESIZE);
	unsigned char vec[BS / 4096 + 1];

	if (mincore((char *)m + b * BS, BS, vec) < 0)
		return false;
	for (long i = 0; i < (long)BS / pg; i++)
		if (!(vec[i] & 1))
			return false;
	return true;
}

/* Up to 2 s for block B of M to become cached (WANT) or not. */
static bool cached_soon(void *m, uint64_t b, bool want)
{
	for (int i = 0; i < 400; i++) {
		if (cached(m, b) == want)
			return true;
		usleep(5000);
	}
	return false;
}

/* D exposed through FUSE as INSTANCE under the test's mount dir; NULL (D freed) on failure. */
static struct store_expose *expose_dest(struct store_device *d, const char *instance, const char *what)
{
	struct store_expose *e = NULL;
	char mdir[600];
	struct store_expose_opts o = {.kind = STORE_EXPOSE_FUSE, .instance = instance};

	snprintf(mdir, sizeof(mdir), "%s/mnt", dir);
	o.mount_dir = mdir;
	if (!ok(d && store_expose_new(&o, &d, 1, &e) == 0, "%s: destination exposed", what)) {
		store_device_free(d);
		return NULL;
	}
	return e;
}

/*
 * Prefill: blocks that arrive at a destination go into the page cache of
 * its FUSE file while it is on (zero blocks only in a 2 MiB region that
 * holds data), a dirty list drops them again, and reads see the latest
 * delivery. Nothing reads the file here: mincore tells what the kernel
 * holds.
 */
static void test_prefill(void)
{
	struct store_device *dst = make_dev("fill", true);
	_cleanup_free_ unsigned char *buf = malloc(BS), *got = malloc(BS);
	struct store_expose *e = expose_dest(dst, "fill", "prefill");

	if (!e)
		return;
	int fd = open(store_expose_path(e, 0), O_RDWR | O_CLOEXEC);
	void *m = fd >= 0 ? mmap(NULL, NB * BS, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	ok(m != MAP_FAILED, "prefill: the file is mapped");
	/* no readahead: a read around block 6 below would wait for blocks never sent */
	if (fd >= 0)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
	is_int(store_expose_prefill_start(e, 0), 0, "prefill: started");
	if (m == MAP_FAILED)
		goto out;

	memset(buf, 'a', BS);
	store_device_deliver(dst, 3, buf, BS);
	ok(cached_soon(m, 3, true), "prefill: an arrived block is in the page cache without a read");
	/* regions of 2 MiB, 32 blocks: 0-31 holds block 3 now, 32-63 nothing yet */
	memset(buf, 0, BS);
	store_device_deliver(dst, 33, buf, BS);
	store_device_deliver(dst, 4, buf, BS);
	memset(buf, 'c', BS);
	store_device_deliver(dst, 5, buf, BS);
	ok(cached_soon(m, 5, true) && !cached(m, 33),
	   "prefill: a block of zeros in a region without data is not copied");
	ok(cached_soon(m, 4, true), "prefill: a block of zeros in a region with data is copied");
	memset(buf, 'e', BS);
	store_device_deliver(dst, 40, buf, BS);
	ok(cached_soon(m, 40, true) && cached_soon(m, 33, true),
	   "prefill: the first data of a region brings the zeros that arrived before it");
	ok(!cached(m, 34), "prefill: a block that has not arrived stays out");

	uint64_t three = 3;
	store_wait_invalidate(store_device_wait(dst), &three, 1);
	store_expose_settle(e); /* the pages go from the exposure's thread */
	ok(!cached(m, 3), "prefill: a dirty list drops the copied pages");
	memset(buf, 'b', BS);
	store_device_deliver(dst, 3, buf, BS);
	ok(cached_soon(m, 3, true), "prefill: the new version is copied in again");
	ok(pread(fd, got, BS, 3 * BS) == BS && got[0] == 'b' && got[BS - 1] == 'b',
	   "prefill: reads see the latest delivery");

	/*
	 * Dropped blocks: 9 is still missing at the stop, 11 came back and
	 * its first page was written through a mapping since (the VM's write,
	 * not written back yet).
	 */
	uint64_t drops[] = { 9, 11 };
	memset(buf, 'g', BS);
	store_device_deliver(dst, 9, buf, BS);
	store_device_deliver(dst, 11, buf, BS);
	ok(cached_soon(m, 9, true) && cached_soon(m, 11, true), "prefill: blocks 9 and 11 copied");
	store_wait_invalidate(store_device_wait(dst), drops, 2);
	store_expose_settle(e);
	memset(buf, 'k', BS);
	store_device_deliver(dst, 11, buf, BS);
	ok(cached_soon(m, 11, true), "prefill: block 11 is back");
	char *w = MAP_FAILED;
	if (fd >= 0)
		w = mmap(NULL, BS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 11 * BS);
	ok(w != MAP_FAILED, "prefill: block 11 mapped for writing");
	if (w != MAP_FAILED)
		w[0] = 'W';

	store_expose_prefill_stop(e);
	memset(buf, 'd', BS);
	store_device_deliver(dst, 6, buf, BS);
	memset(buf, 'h', BS);
	store_device_deliver(dst, 9, buf, BS);
	usleep(100000);
	ok(!cached(m, 9), "prefill: stopped, a dropped block arriving waits while the VM loads");
	store_expose_warm(e);
	ok(cached_soon(m, 9, true), "prefill: ... and is read in once the VM runs");
	ok(!cached(m, 6), "prefill: stopped, other arrivals stay out of the page cache");
	ok(w != MAP_FAILED && w[0] == 'W' && ((char *)m)[11 * BS + 1] == 'k',
	   "prefill: reading blocks in keeps what was written into their pages");
	if (w != MAP_FAILED)
		munmap(w, BS);
	ok(pread(fd, got, BS, 6 * BS) == BS && got[0] == 'd', "prefill: and are read from the device");
	ok(pread(fd, got, BS, 9 * BS) == BS && got[0] == 'h' && got[BS - 1] == 'h',
	   "prefill: the block read in is the one that arrived");
	/* a stop leaves the copier thread to end on its own: a new start waits for it */
	is_int(store_expose_prefill_start(e, 0), 0, "prefill: starts again after a stop");
	memset(buf, 'f', BS);
	store_device_deliver(dst, 7, buf, BS);
	ok(cached_soon(m, 7, true), "prefill: ... and copies arrivals again");
	munmap(m, NB * BS);
out:
	if (fd >= 0)
		close(fd);
	store_expose_free(e);
	store_device_free(dst);
}

/*
 * Prefill before any process has opened the file (a VMM starts some 60-90
 * ms into a migration): blocks that arrive then are copied too.
 */
static void test_prefill_unopened(void)
{
	struct store_device *dst = make_dev("fill2", true);
	_cleanup_free_ unsigned char *buf = malloc(BS);
	struct store_expose *e = expose_dest(dst, "fill2", "prefill unopened");

	if (!e)
		return;
	is_int(store_expose_prefill_start(e, 0), 0, "prefill unopened: started before any open");
	memset(buf, 'a', BS);
	store_device_deliver(dst, 3, buf, BS);
	usleep(200000); /* the copier's turn */
	int fd = open(store_expose_path(e, 0), O_RDONLY | O_CLOEXEC);
	void *m = fd >= 0 ? mmap(NULL, NB * BS, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
	ok(m != MAP_FAILED && cached_soon(m, 3, true),
	   "prefill unopened: a block that arrived before the VMM opened the file is in the page cache");
	if (m != MAP_FAILED)
		munmap(m, NB * BS);
	if (fd >= 0)
		close(fd);
	store_expose_free(e);
	store_device_free(dst);
}

int main(void)
{
	const char *top = getenv("top_builddir");

	snprintf(helper, sizeof(helper), "%s/tests/store-mmap-writer", top ? top : ".");
	if (access(helper, X_OK) < 0)
		snprintf(helper, sizeof(helper), "./store-mmap-writer");
	if (!mkdtemp(dir))
		return 1;
	test_shared_base();
	if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) < 0)
		skip("live migration through FUSE needs root and /dev/fuse");
	else
		test_live(), test_prefill(), test_prefill_unopened();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	return done_testing();
}
