/*
 * net-wire: a guest stand-in for the network tests. It attaches to the TAP a
 * VMM would use (TAPNS/TAP) and copies every frame, with its virtio-net
 * header, to and from a veth end (IFNAME in namespace PEERNS) through a
 * packet socket. The other end of that veth, with the guest's address, then
 * behaves like the guest behind the TAP, ordinary sockets and all.
 *
 *   net-wire TAPNS TAP PEERNS IFNAME
 *
 * Prints "ready" once both ends are open; runs until SIGTERM or SIGINT.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/net/link.h"
#include "core/net/netns.h"
#include "core/util.h"

#define FRAME_MAX (65536 + 128)

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int enter(const char *ns)
{
	_cleanup_close_ int fd = netns_open(ns);

	if (fd < 0)
		return fd;
	return setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
}

/* Copy one frame from IN to OUT; 0 on success or a harmless drop. */
static int pump(int in, int out, char *buf)
{
	ssize_t n = read(in, buf, FRAME_MAX);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR || errno == ENETDOWN ? 0 : -errno;
	if (n == 0)
		return 0;
	/* A frame the other side refuses (e.g. while its link is down) is lost
	 * like on a real wire. */
	(void)write(out, buf, (size_t)n);
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_close_ int tap = -EBADF, pkt = -EBADF;
	static char buf[FRAME_MAX];
	struct sockaddr_ll sll = { 0 };
	int one = 1, r;

	if (argc != 5) {
		fprintf(stderr, "usage: net-wire TAPNS TAP PEERNS IFNAME\n");
		return 2;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);

	r = enter(argv[1]);
	if (r < 0) {
		fprintf(stderr, "net-wire: cannot enter namespace '%s': %s\n", argv[1], strerror(-r));
		return 1;
	}
	tap = net_tap_open(argv[2], true);
	if (tap < 0) {
		fprintf(stderr, "net-wire: cannot attach to '%s': %s\n", argv[2], strerror(-tap));
		return 1;
	}
	/* Let the kernel hand over large segments with partial checksums,
	 * as it does to a virtio-net guest. */
	if (ioctl(tap, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0)
		fprintf(stderr, "net-wire: no offloads on the TAP: %s\n", strerror(errno));

	r = enter(argv[3]);
	if (r < 0) {
		fprintf(stderr, "net-wire: cannot enter namespace '%s': %s\n", argv[3], strerror(-r));
		return 1;
	}
	pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	if (pkt < 0) {
		perror("net-wire: socket");
		return 1;
	}
	if (setsockopt(pkt, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) < 0 ||
	    setsockopt(pkt, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one) < 0) {
		perror("net-wire: setsockopt");
		return 1;
	}
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(argv[4]);
	if (!sll.sll_ifindex || bind(pkt, (struct sockaddr *)&sll, sizeof sll) < 0) {
		fprintf(stderr, "net-wire: cannot bind to '%s': %s\n", argv[4], strerror(errno));
		return 1;
	}
	printf("ready\n");
	fflush(stdout);

	while (!stop) {
		struct pollfd p[2] = { { .fd = tap, .events = POLLIN }, { .fd = pkt, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("net-wire: poll");
			return 1;
		}
		if ((p[0].revents & POLLIN) && pump(tap, pkt, buf) < 0)
			return 1;
		if ((p[1].revents & POLLIN) && pump(pkt, tap, buf) < 0)
			return 1;
	}
	return 0;
}
