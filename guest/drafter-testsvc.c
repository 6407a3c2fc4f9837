/*
 * drafter-testsvc: the test blueprint's service, used to prove continuity
 * from outside the VM. Per TCP connection on port 8080 it writes one line:
 *   boot_id=<uuid> counter=<n> disk=<m> suspends=<s> resumes=<r>
 * counter lives only in memory (+1 every 100 ms), disk is a counter the
 * service rewrites on disk every second (fsync'd), suspends/resumes are
 * files the agent's hook scripts maintain. With drafter.dirty=RATE and
 * drafter.dirty_set=SIZE on the kernel command line it also dirties guest
 * memory at a fixed rate, for migration benchmarks, and the line ends with
 * dirtied=<MiB> stale=<pages>. See docs/guest-agent.md.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/io.h"
#include "core/util.h"
#include "guest/guest.h"

static uint64_t read_counter_file(const char *dir, const char *name)
{
	char path[512], buf[32];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (read_small_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

/* Replace dir/value atomically and durably, so a snapshot never sees a torn file. */
static int write_value(const char *dir, uint64_t v)
{
	char tmp[512], path[512], buf[32];
	_cleanup_close_ int fd = -EBADF, dfd = -EBADF;
	int n;

	snprintf(tmp, sizeof(tmp), "%s/.value.tmp", dir);
	snprintf(path, sizeof(path), "%s/value", dir);
	n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write_all(fd, buf, (size_t)n) < 0 || fsync(fd) < 0)
		return -errno;
	if (rename(tmp, path) < 0)
		return -errno;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0)
		(void)fsync(dfd);
	return 0;
}

static int make_timer(long ms)
{
	struct itimerspec its = {
	    .it_interval = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L},
	    .it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L},
	};
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (timerfd_settime(fd, 0, &its, NULL) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	return fd;
}

/*
 * The memory dirtier. Its buffer is filled with pseudo-random bytes once
 * (so a dirty page costs a migration its full size, compressed or not),
 * then a thread writes the first 8 bytes of each 4 KiB page, page after
 * page, a slice every 10 ms, so that exactly RATE MiB of pages per second
 * are dirtied; the slice size follows the clock, so late wakeups do not
 * slow the rate. A backlog longer than DIRTY_BACKLOG_NS (the VM was
 * paused) is dropped rather than written in one burst.
 *
 * What it writes is the number of the sweep through the buffer, and before
 * writing it checks that the page still holds the previous sweep's number:
 * a page that does not is "stale", a write that a migration (or a snapshot)
 * lost. The count is part of the service's answer.
 */
#define DIRTY_PAGE       4096
#define DIRTY_SLICE_NS   10000000ULL
#define DIRTY_BACKLOG_NS 100000000ULL
#define DIRTY_MAX_MIB    65536U /* for the rate (MiB/s) and the set (MiB) */
#define NS_PER_S         1000000000ULL

struct dirtier {
	unsigned char *buf;
	uint64_t pages;   /* in the buffer */
	uint64_t rate;    /* pages per second */
	uint64_t page;    /* next page to write */
	uint64_t sweep;   /* number of the sweep the next write belongs to (from 1) */
	uint64_t touched; /* pages written (atomic: the main thread reads it) */
	uint64_t stale;   /* pages found without the previous sweep's number (atomic) */
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Pages due after ns nanoseconds at rate pages per second, without overflow. */
static uint64_t dirty_due(uint64_t ns, uint64_t rate)
{
	return ns / NS_PER_S * rate + ns % NS_PER_S * rate / NS_PER_S;
}

static void dirty_page(struct dirtier *d)
{
	volatile uint64_t *stamp = (volatile uint64_t *)(d->buf + d->page * DIRTY_PAGE);

	if (*stamp != d->sweep - 1)
		__atomic_add_fetch(&d->stale, 1, __ATOMIC_RELAXED);
	*stamp = d->sweep;
	if (++d->page == d->pages) {
		d->page = 0;
		d->sweep++;
	}
}

static void *dirty_loop(void *arg)
{
	struct dirtier *d = arg;
	uint64_t start = mono_ns(), done = 0;
	uint64_t backlog = dirty_due(DIRTY_BACKLOG_NS, d->rate);

	for (;;) {
		uint64_t now = mono_ns(), due = dirty_due(now - start, d->rate);
		struct timespec next;

		if (due - done > backlog)
			done = due - backlog;
		for (; done < due; done++) {
			dirty_page(d);
			__atomic_add_fetch(&d->touched, 1, __ATOMIC_RELAXED);
		}
		now += DIRTY_SLICE_NS;
		next.tv_sec = (time_t)(now / NS_PER_S);
		next.tv_nsec = (long)(now % NS_PER_S);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
			;
	}
	return NULL;
}

static uint64_t dirty_mib(struct dirtier *d)
{
	return __atomic_load_n(&d->touched, __ATOMIC_RELAXED) * DIRTY_PAGE >> 20;
}

/* Random bytes, and sweep 0's number at the start of every page. */
static void dirty_fill(struct dirtier *d)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ mono_ns();
	size_t len = d->pages * DIRTY_PAGE;

	for (size_t i = 0; i < len; i += sizeof(x)) {
		/* xorshift64: cheap and incompressible enough */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (i % DIRTY_PAGE == 0)
			memset(d->buf + i, 0, sizeof(x));
		else
			memcpy(d->buf + i, &x, sizeof(x));
	}
	d->sweep = 1;
}

/*
 * Reads drafter.dirty=RATE (MiB/s) and drafter.dirty_set=SIZE (MiB) from
 * the kernel command line in path. Returns 1 with rate and set filled when
 * both are there and valid, 0 when the dirtier is not asked for, or
 * -EINVAL with a message in err.
 */
static int dirty_params(const char *path, uint32_t *rate, uint32_t *set, char *err,
                        size_t errlen)
{
	const struct guest_flag flags[] = {
	    {"dirty", GUEST_FLAG_U32, rate, "MiB of pages dirtied per second"},
	    {"dirty_set", GUEST_FLAG_U32, set, "MiB of the buffer the pages are in"},
	};
	char line[4096], *argv[16] = {"cmdline"}, *save = NULL;
	int argc = 1, r;

	*rate = *set = 0;
	if (read_small_file(path, line, sizeof(line)) < 0)
		return 0;
	for (char *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
		if (strncmp(t, "drafter.dirty", 13) != 0)
			continue;
		if (argc == (int)ARRAY_SIZE(argv)) {
			snprintf(err, errlen, "too many drafter.dirty parameters");
			return -EINVAL;
		}
		/* "drafter.dirty=16" is parsed as the flag "-dirty=16" */
		t[7] = '-';
		argv[argc++] = t + 7;
	}
	r = guest_flags_parse(flags, ARRAY_SIZE(flags), argc, argv, err, errlen);
	if (r != 0)
		return r < 0 ? r : 0;
	if (*rate == 0 && *set == 0)
		return 0;
	if (*rate == 0 || *set == 0 || *rate > DIRTY_MAX_MIB || *set > DIRTY_MAX_MIB) {
		snprintf(err, errlen, "drafter.dirty and drafter.dirty_set must both be 1 to %u",
		         DIRTY_MAX_MIB);
		return -EINVAL;
	}
	return 1;
}

/* Allocates and fills the buffer (before the service listens, so a snapshot has it). */
static int dirty_setup(struct dirtier *d, uint32_t rate, uint32_t set)
{
	size_t len = (size_t)set << 20;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	d->buf = p;
	d->pages = len / DIRTY_PAGE;
	d->rate = (uint64_t)rate * ((1 << 20) / DIRTY_PAGE);
	dirty_fill(d);
	return 0;
}

static int dirty_start(struct dirtier *d)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, dirty_loop, d);

	if (r != 0)
		return -r;
	pthread_detach(t);
	return 0;
}

static uint64_t timer_ticks(int fd)
{
	uint64_t n = 0;

	if (read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

int main(int argc, char **argv)
{
	uint32_t port = 8080;
	const char *dir = "/var/lib/testsvc", *cmdline = "/proc/cmdline";
	bool background = false;
	const struct guest_flag flags[] = {
	    {"daemon", GUEST_FLAG_BOOL, &background,
	     "Go to the background once listening (the parent's exit means ready)"},
	    {"cmdline", GUEST_FLAG_STRING, &cmdline,
	     "Kernel command line to read drafter.dirty= from (default \"/proc/cmdline\")"},
	    {"port", GUEST_FLAG_U32, &port, "TCP port to answer on (default 8080)"},
	    {"state-dir", GUEST_FLAG_STRING, &dir,
	     "Directory of the value, suspends and resumes files (default \"/var/lib/testsvc\")"},
	};
	_cleanup_close_ int lfd = -EBADF, fast = -EBADF, slow = -EBADF;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	struct dirtier dirty = {0};
	uint64_t counter = 0, disk;
	uint32_t rate, set;
	char boot_id[64] = "unknown", err[256];
	int one = 1, zero = 0, r;

	r = guest_flags_parse(flags, ARRAY_SIZE(flags), argc, argv, err, sizeof(err));
	if (r > 0) {
		guest_flags_usage("drafter-testsvc", flags, ARRAY_SIZE(flags),
		                  stderr); /* as Go does */
		return 0;
	}
	if (r < 0 || port == 0 || port > 65535) {
		fprintf(stderr, "drafter-testsvc: %s\n", r < 0 ? err : "invalid port");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	(void)guest_boot_id(boot_id, sizeof(boot_id));
	(void)mkdir(dir, 0755);
	disk = read_counter_file(dir, "value");

	sa.sin6_port = htons((uint16_t)port);
	lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		/* a kernel without IPv6: fall back to IPv4 only */
		struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

		lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    bind(lfd, (struct sockaddr *)&s4, sizeof(s4)) < 0)
			goto fail_listen;
	} else if (setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	           setsockopt(lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0 ||
	           bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto fail_listen;
	if (listen(lfd, 64) < 0)
		goto fail_listen;

	fast = make_timer(100);
	slow = make_timer(1000);
	if (fast < 0 || slow < 0) {
		fprintf(stderr, "drafter-testsvc: cannot create timer: %s\n",
		        strerror(-(fast < 0 ? fast : slow)));
		return 1;
	}
	r = dirty_params(cmdline, &rate, &set, err, sizeof(err));
	if (r < 0)
		fprintf(stderr, "drafter-testsvc: not dirtying memory: '%s': %s\n", cmdline, err);
	else if (r > 0 && (r = dirty_setup(&dirty, rate, set)) < 0)
		fprintf(stderr, "drafter-testsvc: not dirtying memory: cannot map %u MiB: %s\n",
		        set, strerror(-r));
	fprintf(stderr, "drafter-testsvc: listening on port %u, disk value %" PRIu64 "\n", port,
	        disk);
	if (background) {
		pid_t pid = fork();

		if (pid < 0) {
			fprintf(stderr, "drafter-testsvc: cannot fork: %s\n", strerror(errno));
			return 1;
		}
		if (pid > 0)
			_exit(0);
		setsid();
	}
	/* a thread does not survive the fork: start it in the process that stays */
	if (dirty.buf && (r = dirty_start(&dirty)) < 0)
		fprintf(stderr, "drafter-testsvc: not dirtying memory: cannot start a thread: %s\n",
		        strerror(-r));

	for (;;) {
		struct pollfd p[3] = {
		    {.fd = lfd, .events = POLLIN},
		    {.fd = fast, .events = POLLIN},
		    {.fd = slow, .events = POLLIN},
		};

		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "drafter-testsvc: poll: %s\n", strerror(errno));
			return 1;
		}
		if (p[1].revents & POLLIN)
			counter += timer_ticks(fast);
		if (p[2].revents & POLLIN) {
			/* one step per wakeup, whatever the number of missed ticks */
			if (timer_ticks(slow) > 0) {
				r = write_value(dir, disk + 1);
				if (r < 0)
					fprintf(stderr,
					        "drafter-testsvc: cannot write '%s/value': %s\n",
					        dir, strerror(-r));
				else
					disk++;
			}
		}
		if (p[0].revents & POLLIN) {
			_cleanup_close_ int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			char line[256];
			int n;

			if (c < 0)
				continue;
			n = snprintf(line, sizeof(line),
			             "boot_id=%s counter=%" PRIu64 " disk=%" PRIu64
			             " suspends=%" PRIu64 " resumes=%" PRIu64,
			             boot_id, counter, disk, read_counter_file(dir, "suspends"),
			             read_counter_file(dir, "resumes"));
			if (dirty.buf)
				n += snprintf(line + n, sizeof(line) - (size_t)n,
				              " dirtied=%" PRIu64 " stale=%" PRIu64, dirty_mib(&dirty),
				              __atomic_load_n(&dirty.stale, __ATOMIC_RELAXED));
			n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
			(void)write_all(c, line, (size_t)n);
			shutdown(c, SHUT_WR);
		}
	}

fail_listen:
	fprintf(stderr, "drafter-testsvc: cannot listen on port %u: %s\n", port, strerror(errno));
	return 1;
}
