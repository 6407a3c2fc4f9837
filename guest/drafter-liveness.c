/*
 * drafter-liveness: tells the host once that the guest has booted. Over
 * vsock it connects to the host's liveness port and closes (the
 * original's signal); over a virtio-serial port it writes one line
 * "ready <boot_id>", which the kernel holds until the host is connected.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "guest/guest.h"

static void on_alarm(int sig)
{
	(void)sig; /* only there to interrupt a blocking write */
}

static int arm_timeout(uint64_t ns)
{
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART */
	struct itimerval it = {
	    .it_value = {.tv_sec = (time_t)(ns / 1000000000ULL),
	                 .tv_usec = (suseconds_t)(ns % 1000000000ULL / 1000)},
	};

	if (ns == 0)
		return 0;
	if (sigaction(SIGALRM, &sa, NULL) < 0 || setitimer(ITIMER_REAL, &it, NULL) < 0)
		return -errno;
	return 0;
}

static int liveness_serial(const char *path, uint64_t timeout_ns)
{
	_cleanup_close_ int fd = -EBADF;
	char line[128], id[64] = "";
	int r, n;

	fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		fprintf(stderr, "drafter-liveness: cannot open port '%s': %s\n", path,
		        strerror(errno));
		return 1;
	}
	(void)guest_boot_id(id, sizeof(id));
	n = snprintf(line, sizeof(line), "ready %s\n", id);
	r = arm_timeout(timeout_ns);
	if (r >= 0) {
		ssize_t w = write(fd, line, (size_t)n);

		r = w == n ? 0 : w < 0 ? -errno : -EIO;
	}
	if (r == -EINTR) {
		fprintf(stderr, "drafter-liveness: host did not connect to port '%s' in time\n",
		        path);
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "drafter-liveness: cannot write to port '%s': %s\n", path,
		        strerror(-r));
		return 1;
	}
	return 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int liveness_vsock(uint32_t port, uint64_t timeout_ns)
{
	uint64_t deadline = mono_ns() + timeout_ns;
	int fd;

	for (;;) {
		uint64_t now = mono_ns();

		fd = guest_vsock_dial(GUEST_VSOCK_CID_HOST, port,
		                      now < deadline ? deadline - now : 1);
		if (fd >= 0)
			break;
		if (fd == -EAFNOSUPPORT || fd == -ENODEV || fd == -ETIMEDOUT ||
		    mono_ns() >= deadline) {
			fprintf(stderr, "drafter-liveness: cannot connect to vsock port %u: %s\n",
			        port, strerror(-fd));
			return 1;
		}
		/* Refused: the host listener is not up yet; no event tells us when it is. */
		struct timespec ts = {.tv_nsec = 100000000L};
		nanosleep(&ts, NULL);
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	uint32_t port = 25;
	uint64_t timeout_ns = 60ULL * 1000000000ULL;
	const char *transport = "auto", *port_name = GUEST_LIVENESS_PORT_NAME;
	const struct guest_flag flags[] = {
	    {"vsock-port", GUEST_FLAG_U32, &port, "VSock port (default 25)"},
	    {"vsock-timeout", GUEST_FLAG_DURATION, &timeout_ns,
	     "VSock dial timeout (default 1m0s)"},
	    {"transport", GUEST_FLAG_STRING, &transport,
	     "Channel to the host: auto, vsock or virtio-serial (default \"auto\")"},
	    {"port-name", GUEST_FLAG_STRING, &port_name,
	     "Name of the virtio-serial port (default \"" GUEST_LIVENESS_PORT_NAME "\")"},
	};
	enum guest_transport want, t;
	char err[256], path[512];
	int r;

	r = guest_flags_parse(flags, ARRAY_SIZE(flags), argc, argv, err, sizeof(err));
	if (r > 0) {
		guest_flags_usage("drafter-liveness", flags, ARRAY_SIZE(flags),
		                  stderr); /* as Go does */
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "drafter-liveness: %s\n", err);
		guest_flags_usage("drafter-liveness", flags, ARRAY_SIZE(flags), stderr);
		return 2;
	}
	if (guest_transport_parse(transport, &want) < 0) {
		fprintf(
		    stderr,
		    "drafter-liveness: invalid transport '%s': want auto, vsock or virtio-serial\n",
		    transport);
		return 2;
	}
	t = guest_transport_detect(want, "/sys/class/virtio-ports", port_name, path, sizeof(path));
	if (t == GUEST_TRANSPORT_SERIAL)
		return liveness_serial(path, timeout_ns);
	return liveness_vsock(port, timeout_ns);
}
