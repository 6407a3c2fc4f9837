/*
 * Packet holding (see hold.h). A worker thread joins the namespace, binds an
 * NFQUEUE, installs a rule that queues everything forwarded to the TAP, and
 * reads the queue's packet ids (metadata only) until it is told to release
 * or the window's maximum length passes. Release accepts every held packet
 * with one batch verdict, removes the rule and accepts whatever was still in
 * flight. The rule has the bypass flag, so if drafter dies while holding,
 * traffic flows again instead of being black-holed.
 *
 * Kernels without the native nftables queue expression (CONFIG_NFT_QUEUE)
 * get the xtables NFQUEUE target through nft_compat instead, which needs
 * separate ip and ip6 tables.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "core/net/hold.h"
#include "core/net/netns.h"
#include "core/net/nft.h"
#include "core/util.h"

#define HOLD_TABLE "drafter_hold"
#define RECV_BUF 65536

struct net_hold {
	pthread_t thread;
	int nsfd;
	int release_fd; /* eventfd: the caller asks for release */
	int ready_fd;   /* eventfd: the worker finished starting (or failed) */
	char ifname[IFNAMSIZ];
	uint16_t queue_num;
	uint32_t queue_max;
	uint64_t max_window_ns;
	int start_err;
	int err;
	struct net_hold_stats stats;
	/* worker state */
	struct mnl_socket *nl;
	uint32_t portid;
	uint32_t max_id;
	bool any;
	char *buf;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(struct mnl_socket *, mnl_socket_close)

/* Send one queue configuration message and wait for the kernel's answer. */
static int nfq_request(struct net_hold *h, struct nlmsghdr *nlh)
{
	uint32_t seq = nlh->nlmsg_seq = (uint32_t)now_ns();

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(h->nl, h->buf, RECV_BUF);
		if (n < 0)
			return errno == EINTR ? -EINTR : -errno;
		int r = mnl_cb_run(h->buf, (size_t)n, seq, h->portid, NULL, NULL);
		if (r == MNL_CB_ERROR)
			return -errno;
		if (r == MNL_CB_STOP)
			return 0;
	}
}

static int queue_bind(struct net_hold *h)
{
	char b[512];
	struct nlmsghdr *nlh;
	int r;

	nlh = nfq_nlmsg_put(b, NFQNL_MSG_CONFIG, h->queue_num);
	nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
	r = nfq_request(h, nlh);
	/* The kernel says EPERM when another socket owns the queue. */
	if (r == -EPERM)
		return -EBUSY;
	if (r < 0)
		return r;
	nlh = nfq_nlmsg_put(b, NFQNL_MSG_CONFIG, h->queue_num);
	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, h->queue_max);
	/* Large segments stay whole; a full queue drops (no fail-open). */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	return nfq_request(h, nlh);
}

static void remove_rules(void)
{
	(void)nft_delete_table(NFPROTO_INET, HOLD_TABLE);
	(void)nft_delete_table(NFPROTO_IPV4, HOLD_TABLE);
	(void)nft_delete_table(NFPROTO_IPV6, HOLD_TABLE);
}

static int add_rules(struct net_hold *h, bool compat)
{
	static const int compat_families[] = { NFPROTO_IPV4, NFPROTO_IPV6 };
	static const int native_families[] = { NFPROTO_INET };
	const int *fam = compat ? compat_families : native_families;
	size_t nfam = compat ? 2 : 1;
	struct nft_batch *b;
	int r;

	nft_batch_new(&b);
	for (size_t i = 0; i < nfam; i++) {
		struct nftnl_rule *rule;
		nft_batch_add_table(b, fam[i], HOLD_TABLE);
		/* Before any filtering: held packets are judged when released. */
		nft_batch_add_chain(b, fam[i], HOLD_TABLE, "forward", "filter", NF_INET_FORWARD, -300);
		rule = nft_rule_new(fam[i], HOLD_TABLE, "forward");
		nft_rule_oifname(rule, h->ifname, false);
		nft_rule_queue(rule, h->queue_num, compat);
		nft_batch_add_rule(b, rule);
	}
	r = nft_batch_commit(b);
	nft_batch_free(b);
	return r;
}

static int packet_cb(const struct nlmsghdr *nlh, void *data)
{
	struct net_hold *h = data;
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return MNL_CB_OK;
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	h->max_id = ntohl(ph->packet_id);
	h->any = true;
	h->stats.held++;
	return MNL_CB_OK;
}

/* Read what is queued on the socket; WAIT blocks for the first message. */
static int read_packets(struct net_hold *h, bool wait)
{
	ssize_t n = recv(mnl_socket_get_fd(h->nl), h->buf, RECV_BUF, wait ? 0 : MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	if (mnl_cb_run(h->buf, (size_t)n, 0, h->portid, packet_cb, h) == MNL_CB_ERROR)
		return -errno;
	return 1;
}

static int accept_all(struct net_hold *h)
{
	char b[256];
	struct nlmsghdr *nlh;

	if (!h->any)
		return 0;
	/* Accepts every queued packet with an id up to max_id, in order. */
	nlh = nfq_nlmsg_put(b, NFQNL_MSG_VERDICT_BATCH, h->queue_num);
	nfq_nlmsg_verdict_put(nlh, (int)h->max_id, NF_ACCEPT);
	h->any = false;
	return mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0 ? -errno : 0;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	(void)!write(fd, &one, sizeof one);
}

static int hold_loop(struct net_hold *h)
{
	uint64_t start = now_ns();
	int r;

	for (;;) {
		uint64_t elapsed = now_ns() - start;
		struct pollfd p[2] = {
			{ .fd = mnl_socket_get_fd(h->nl), .events = POLLIN },
			{ .fd = h->release_fd, .events = POLLIN },
		};
		int timeout;

		if (elapsed >= h->max_window_ns) {
			h->stats.expired = true;
			break;
		}
		timeout = (int)((h->max_window_ns - elapsed + 999999) / 1000000);
		r = poll(p, 2, timeout);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0 && (p[1].revents & POLLIN))
			break;
		if (r > 0 && (p[0].revents & POLLIN)) {
			r = read_packets(h, false);
			if (r < 0)
				return r;
		}
	}
	h->stats.window_ns = now_ns() - start;
	return 0;
}

static void *hold_thread(void *arg)
{
	struct net_hold *h = arg;
	_cleanup_(mnl_socket_closep) struct mnl_socket *nl = NULL;
	int one = 1, sz = 8 << 20, r;

	if (setns(h->nsfd, CLONE_NEWNET) < 0) {
		h->start_err = -errno;
		goto ready;
	}
	nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		h->start_err = -errno;
		goto ready;
	}
	h->nl = nl;
	h->portid = mnl_socket_get_portid(nl);
	(void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
	(void)mnl_socket_setsockopt(nl, NETLINK_NO_ENOBUFS, &one, sizeof one);
	r = queue_bind(h);
	if (r < 0) {
		h->start_err = r;
		goto ready;
	}
	/* A table left by a holder that died is stale: the queue was free. */
	remove_rules();
	r = add_rules(h, false);
	if (r < 0) {
		h->stats.compat = true;
		remove_rules();
		r = add_rules(h, true);
	}
	if (r < 0) {
		remove_rules();
		h->start_err = r;
		goto ready;
	}
	signal_fd(h->ready_fd);

	h->err = hold_loop(h);
	/* Release: held packets first, then the rule, then stragglers. */
	r = accept_all(h);
	if (r < 0 && !h->err)
		h->err = r;
	remove_rules();
	while ((r = read_packets(h, false)) > 0)
		(void)accept_all(h);
	(void)accept_all(h);
	h->nl = NULL;
	return NULL;

ready:
	h->nl = NULL;
	signal_fd(h->ready_fd);
	return NULL;
}

static void hold_free(struct net_hold *h)
{
	if (h->nsfd >= 0)
		close(h->nsfd);
	if (h->release_fd >= 0)
		close(h->release_fd);
	if (h->ready_fd >= 0)
		close(h->ready_fd);
	free(h->buf);
	free(h);
}

int net_hold_start_opts(const char *netns, const struct net_hold_opts *opts, struct net_hold **out)
{
	struct net_hold *h = xcalloc(1, sizeof *h);
	const char *ifname = opts && opts->interface ? opts->interface : "tap0";
	uint64_t v;
	int r;

	h->nsfd = h->release_fd = h->ready_fd = -EBADF;
	if (strlen(ifname) >= IFNAMSIZ) {
		hold_free(h);
		return -EINVAL;
	}
	snprintf(h->ifname, sizeof h->ifname, "%s", ifname);
	h->queue_num = opts && opts->queue_num ? opts->queue_num : NET_HOLD_QUEUE_NUM;
	h->queue_max = opts && opts->queue_max ? opts->queue_max : NET_HOLD_QUEUE_MAX;
	h->max_window_ns = opts && opts->max_window_ns ? opts->max_window_ns : NET_HOLD_MAX_WINDOW_NS;
	/* The kernel keeps held packets in memory: bound both. */
	if (h->queue_max > NET_HOLD_QUEUE_LIMIT)
		h->queue_max = NET_HOLD_QUEUE_LIMIT;
	if (h->max_window_ns > NET_HOLD_WINDOW_LIMIT_NS)
		h->max_window_ns = NET_HOLD_WINDOW_LIMIT_NS;
	h->buf = xcalloc(1, RECV_BUF);
	h->nsfd = netns_open(netns);
	if (h->nsfd < 0) {
		r = h->nsfd;
		hold_free(h);
		return r;
	}
	h->release_fd = eventfd(0, EFD_CLOEXEC);
	h->ready_fd = eventfd(0, EFD_CLOEXEC);
	if (h->release_fd < 0 || h->ready_fd < 0) {
		r = -errno;
		hold_free(h);
		return r;
	}
	r = pthread_create(&h->thread, NULL, hold_thread, h);
	if (r) {
		hold_free(h);
		return -r;
	}
	while (read(h->ready_fd, &v, sizeof v) < 0 && errno == EINTR)
		;
	if (h->start_err) {
		r = h->start_err;
		pthread_join(h->thread, NULL);
		hold_free(h);
		return r;
	}
	*out = h;
	return 0;
}

int net_hold_start(const char *netns, struct net_hold **out)
{
	return net_hold_start_opts(netns, NULL, out);
}

int net_hold_release(struct net_hold *h, struct net_hold_stats *stats)
{
	int r;

	if (!h)
		return -EINVAL;
	signal_fd(h->release_fd);
	pthread_join(h->thread, NULL);
	r = h->err;
	if (stats)
		*stats = h->stats;
	hold_free(h);
	return r;
}
