/*
 * drafter-agent: runs in the guest and lets the host call BeforeSuspend
 * and AfterResume (panrpc JSON lines). Over vsock it dials the host and
 * dials again whenever the connection ends (every restore resets it); over
 * a virtio-serial port it keeps the port open and waits for the host to
 * reconnect. Options are the original's, in Go flag syntax.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "guest/guest.h"

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int serve_serial(const struct guest_agent_opts *o, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		fprintf(stderr, "drafter-agent: cannot open port '%s': %s\n", path,
		        strerror(errno));
		return 1;
	}
	fprintf(stderr, "drafter-agent: serving on virtio-serial port '%s'\n", path);
	for (;;) {
		int r = guest_agent_serve(o, fd);

		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "drafter-agent: port '%s': %s\n", path, strerror(-r));
			return 1;
		}
		/* EOF: no host client. Block until one connects (see docs/guest-agent.md). */
		r = guest_serial_wait_host(fd);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "drafter-agent: port '%s': %s\n", path, strerror(-r));
			return 1;
		}
	}
}

static int serve_vsock(const struct guest_agent_opts *o, uint32_t port, uint64_t timeout_ns)
{
	int last_err = 0;

	for (;;) {
		_cleanup_close_ int fd = guest_vsock_dial(GUEST_VSOCK_CID_HOST, port, timeout_ns);
		int r;

		if (fd < 0) {
			if (fd != last_err)
				fprintf(stderr,
				        "drafter-agent: cannot connect to vsock port %u: %s\n",
				        port, strerror(-fd));
			last_err = fd;
			if (fd == -EAFNOSUPPORT || fd == -ENODEV)
				return 1;
			/*
			 * No event tells the guest that the host listens again;
			 * a short pause keeps a refused dial from spinning the vCPU.
			 */
			pause_ms(100);
			continue;
		}
		last_err = 0;
		fprintf(stderr, "drafter-agent: connected to vsock port %u\n", port);
		r = guest_agent_serve(o, fd);
		if (r < 0)
			fprintf(stderr, "drafter-agent: connection ended: %s\n", strerror(-r));
	}
}

int main(int argc, char **argv)
{
	uint32_t port = 26;
	uint64_t timeout_ns = 60ULL * 1000000000ULL;
	const char *shell = "sh", *before = "", *after = "", *transport = "auto",
	           *port_name = GUEST_AGENT_PORT_NAME;
	const struct guest_flag flags[] = {
	    {"vsock-port", GUEST_FLAG_U32, &port, "VSock port (default 26)"},
	    {"vsock-timeout", GUEST_FLAG_DURATION, &timeout_ns,
	     "VSock dial timeout (default 1m0s)"},
	    {"shell-cmd", GUEST_FLAG_STRING, &shell,
	     "Shell to use to run the before suspend and after resume commands (default \"sh\")"},
	    {"before-suspend-cmd", GUEST_FLAG_STRING, &before,
	     "Command to run before the VM is suspended (leave empty to disable)"},
	    {"after-resume-cmd", GUEST_FLAG_STRING, &after,
	     "Command to run after the VM has been resumed (leave empty to disable)"},
	    {"transport", GUEST_FLAG_STRING, &transport,
	     "Channel to the host: auto, vsock or virtio-serial (default \"auto\")"},
	    {"port-name", GUEST_FLAG_STRING, &port_name,
	     "Name of the virtio-serial port (default \"" GUEST_AGENT_PORT_NAME "\")"},
	};
	struct guest_agent_opts o;
	enum guest_transport want, t;
	char err[256], path[512];
	int r;

	r = guest_flags_parse(flags, ARRAY_SIZE(flags), argc, argv, err, sizeof(err));
	if (r > 0) {
		guest_flags_usage("drafter-agent", flags, ARRAY_SIZE(flags),
		                  stderr); /* as Go does */
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "drafter-agent: %s\n", err);
		guest_flags_usage("drafter-agent", flags, ARRAY_SIZE(flags), stderr);
		return 2;
	}
	if (guest_transport_parse(transport, &want) < 0) {
		fprintf(
		    stderr,
		    "drafter-agent: invalid transport '%s': want auto, vsock or virtio-serial\n",
		    transport);
		return 2;
	}
	/* A host that goes away mid-answer must not kill the agent. */
	signal(SIGPIPE, SIG_IGN);
	o = (struct guest_agent_opts){
	    .shell_cmd = shell,
	    .before_suspend_cmd = before,
	    .after_resume_cmd = after,
	};
	t = guest_transport_detect(want, "/sys/class/virtio-ports", port_name, path, sizeof(path));
	if (t == GUEST_TRANSPORT_SERIAL)
		return serve_serial(&o, path);
	return serve_vsock(&o, port, timeout_ns);
}
