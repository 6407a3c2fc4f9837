/*
 * drafter-testsvc: the test blueprint's service, used to prove continuity
 * from outside the VM. Per TCP connection on port 8080 it writes one line:
 *   boot_id=<uuid> counter=<n> disk=<m> suspends=<s> resumes=<r>
 * counter lives only in memory (+1 every 100 ms), disk is a counter the
 * service rewrites on disk every second (fsync'd), suspends/resumes are
 * files the agent's hook scripts maintain. See docs/guest-agent.md.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
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
	const char *dir = "/var/lib/testsvc";
	bool background = false;
	const struct guest_flag flags[] = {
	    {"daemon", GUEST_FLAG_BOOL, &background,
	     "Go to the background once listening (the parent's exit means ready)"},
	    {"port", GUEST_FLAG_U32, &port, "TCP port to answer on (default 8080)"},
	    {"state-dir", GUEST_FLAG_STRING, &dir,
	     "Directory of the value, suspends and resumes files (default \"/var/lib/testsvc\")"},
	};
	_cleanup_close_ int lfd = -EBADF, fast = -EBADF, slow = -EBADF;
	struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
	uint64_t counter = 0, disk;
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
			             " suspends=%" PRIu64 " resumes=%" PRIu64 "\n",
			             boot_id, counter, disk, read_counter_file(dir, "suspends"),
			             read_counter_file(dir, "resumes"));
			(void)write_all(c, line, (size_t)n);
			shutdown(c, SHUT_WR);
		}
	}

fail_listen:
	fprintf(stderr, "drafter-testsvc: cannot listen on port %u: %s\n", port, strerror(errno));
	return 1;
}
