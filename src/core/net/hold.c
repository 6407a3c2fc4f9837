/*
 * Packet holding (see hold.h). A worker thread joins the namespace, binds an
 * NFQUEUE and creates the hold tables with empty chains on the forward and
 * output hooks (prepare). Engaging adds rules that queue everything routed
 * to the TAP (forwarded or sent by the namespace itself) and switches the
 * queue to holding; the worker then reads the queued packet ids and, from
 * the first bytes the queue copies, their destinations and flows.
 * Disengaging accepts every held packet, the latest flow first (see
 * accept_all), and switches the queue to
 * passing: fail-open with a length of 0, so packets the rules still divert
 * go straight on. When the guest's MAC address is known, disengaging first
 * puts it in the neighbour table for those destinations, so the released
 * packets leave without waiting for the guest, just resumed, to answer
 * address resolution. The rules only go with the tables on release, when
 * nothing is held any more: unregistering a hook makes the kernel drop
 * every packet queued in the namespace.
 *
 * The rules have the bypass flag, so if drafter dies while holding, traffic
 * flows again instead of being black-holed. Kernels without the native
 * nftables queue expression (CONFIG_NFT_QUEUE) get the xtables NFQUEUE
 * target through nft_compat instead, which needs separate ip and ip6 tables.
 *
 * Where the time goes: a batch the kernel refuses costs an RCU grace period
 * (7-25 ms here) and a committed one a fraction of a millisecond, so setup
 * only deletes tables that exist and engaging never fails a batch.
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
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>

#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#include "core/net/hold.h"
#include "core/net/link.h"
#include "core/net/netns.h"
#include "core/net/nft.h"
#include "core/util.h"

#define HOLD_TABLE "drafter_hold"
#define PROBE_TABLE "drafter_hold_probe"
#define HOLD_PRIO (-300) /* before any filtering: held packets are judged when released */
#define RECV_BUF 65536
#define HOLD_COPY_LEN 64  /* an IPv4 header with options or an IPv6 one, and the ports after it */
#define HOLD_MAX_DESTS 8  /* destinations remembered per window */
#define HOLD_ORDER_MAX 256 /* more packets held than this are released in arrival order */

/* A held packet: its queue id, its flow's hash, when it came, its flow's last arrival. */
struct held {
	uint32_t id, flow, seq, last;
};

enum hold_cmd { HOLD_ENGAGE, HOLD_DISENGAGE, HOLD_RELEASE };

struct net_hold {
	pthread_t thread;
	int nsfd;
	int cmd_fd;  /* eventfd: the caller posted cmd */
	int done_fd; /* eventfd: the worker finished starting or cmd */
	char ifname[IFNAMSIZ];
	uint16_t queue_num;
	uint32_t queue_max;
	uint64_t max_window_ns;
	int start_err;
	enum hold_cmd cmd;
	int cmd_err;
	int err; /* the first error outside a command */
	/* worker state */
	bool compat, rules, engaged;
	bool posted; /* the caller posted cmd and has not had the answer yet */
	uint64_t window_start;
	struct net_hold_stats win, total;
	struct mnl_socket *nl;
	struct nl_sock *rt; /* route netlink, for the neighbour table (NULL: opened when needed) */
	uint32_t portid;
	uint32_t max_id;
	bool any;
	char *buf;
	uint8_t guest_mac[6];
	bool have_mac;
	struct net_addr dests[HOLD_MAX_DESTS]; /* of the packets held in this window */
	unsigned n_dests;
	struct held held[HOLD_ORDER_MAX]; /* this window's packets, in arrival order */
	uint32_t n_held; /* counted on past HOLD_ORDER_MAX: then not all are in held[] */
};

/* The hooks the rules sit on: forwarded packets and the namespace's own. */
static const struct {
	const char *chain;
	unsigned hook;
} hold_hooks[] = {
	{ "forward", NF_INET_FORWARD },
	{ "output", NF_INET_LOCAL_OUT },
};

/* Whether the kernel has the native queue expression: 0 unknown, 1 yes, 2 no. */
static int native_queue;

DEFINE_TRIVIAL_CLEANUP_FUNC(struct mnl_socket *, mnl_socket_close)

static void note_err(struct net_hold *h, int err)
{
	if (err < 0 && !h->err)
		h->err = err;
}

/* Remember where a held packet goes (its IP header's destination). */
static void note_dest(struct net_hold *h, const uint8_t *p, size_t len)
{
	struct net_addr a = { 0 };

	if (len >= 20 && p[0] >> 4 == 4) {
		a.family = AF_INET;
		memcpy(a.a, p + 16, 4);
	} else if (len >= 40 && p[0] >> 4 == 6) {
		a.family = AF_INET6;
		memcpy(a.a, p + 24, 16);
	} else {
		return;
	}
	for (unsigned i = 0; i < h->n_dests; i++)
		if (net_addr_eq(&h->dests[i], &a))
			return;
	if (h->n_dests < HOLD_MAX_DESTS)
		h->dests[h->n_dests++] = a;
}

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t len)
{
	while (len--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

/*
 * A packet's flow, hashed: its addresses and protocol, and for TCP, UDP,
 * UDP-Lite and SCTP its ports (not for IPv4 fragments, which all share
 * their datagram's flow that way). Two flows with one hash are released
 * as one, in arrival order: the hash only decides the order.
 */
static uint32_t flow_of(const uint8_t *p, size_t len)
{
	size_t l4;
	uint8_t proto;
	uint32_t f = 2166136261u;

	if (len >= 20 && p[0] >> 4 == 4) {
		proto = p[9];
		f = fnv1a(f, p + 12, 8);
		/* fragments: more to come (MF) or an offset */
		l4 = (p[6] & 0x3f) || p[7] ? 0 : (size_t)(p[0] & 0x0f) * 4;
	} else if (len >= 40 && p[0] >> 4 == 6) {
		proto = p[6]; /* extension headers: no ports, the addresses decide */
		f = fnv1a(f, p + 8, 32);
		l4 = 40;
	} else {
		return 0;
	}
	f = fnv1a(f, &proto, 1);
	if ((proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	     proto == IPPROTO_SCTP) && l4 >= 20 && len >= l4 + 4)
		f = fnv1a(f, p + l4, 4);
	return f;
}

static void packet_seen(struct net_hold *h, const struct nlmsghdr *nlh)
{
	struct nlattr *attr[NFQA_MAX + 1] = { 0 };
	struct nfqnl_msg_packet_hdr *ph;
	const uint8_t *payload = NULL;
	size_t len = 0;

	if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
		return;
	ph = mnl_attr_get_payload(attr[NFQA_PACKET_HDR]);
	h->max_id = ntohl(ph->packet_id);
	h->any = true;
	h->win.held++;
	if (attr[NFQA_PAYLOAD]) {
		payload = mnl_attr_get_payload(attr[NFQA_PAYLOAD]);
		len = mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]);
		note_dest(h, payload, len);
	}
	if (h->n_held < HOLD_ORDER_MAX)
		h->held[h->n_held] = (struct held){ h->max_id, flow_of(payload, len), h->n_held, 0 };
	h->n_held++;
}

/*
 * Handle the messages in h->buf: packets are counted, the answer to request
 * SEQ (if any) is returned through *ACK. A verdict on packets that are gone
 * (dropped by the kernel) answers ENOENT, which is no error of ours.
 */
static void handle_msgs(struct net_hold *h, size_t len, uint32_t seq, int *ack)
{
	int n = (int)len;

	for (const struct nlmsghdr *nlh = (const struct nlmsghdr *)h->buf; mnl_nlmsg_ok(nlh, n);
	     nlh = mnl_nlmsg_next(nlh, &n)) {
		if (nlh->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
			if (seq && nlh->nlmsg_seq == seq)
				*ack = e->error;
			else if (e->error != -ENOENT)
				note_err(h, e->error);
		} else if (NFNL_MSG_TYPE(nlh->nlmsg_type) == NFQNL_MSG_PACKET) {
			packet_seen(h, nlh);
		}
	}
}

/* Read what is queued on the socket: 1 when something was, 0 when not. */
static int read_packets(struct net_hold *h)
{
	ssize_t n = recv(mnl_socket_get_fd(h->nl), h->buf, RECV_BUF, MSG_DONTWAIT);

	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	handle_msgs(h, (size_t)n, 0, NULL);
	return 1;
}

static int drain(struct net_hold *h)
{
	int r;

	while ((r = read_packets(h)) > 0)
		;
	return r;
}

/* Send one queue configuration message and wait for the kernel's answer. */
static int nfq_request(struct net_hold *h, struct nlmsghdr *nlh)
{
	uint32_t seq = nlh->nlmsg_seq = (uint32_t)now_ns() | 1;
	int ack = 1;

	nlh->nlmsg_flags |= NLM_F_ACK;
	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	while (ack > 0) {
		ssize_t n = recv(mnl_socket_get_fd(h->nl), h->buf, RECV_BUF, 0);
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0)
			handle_msgs(h, (size_t)n, seq, &ack);
	}
	return ack;
}

/*
 * Holding: up to queue_max packets wait, overflow drops (no fail-open).
 * Passing: the queue has no room and fails open, so every packet goes on.
 */
static int queue_mode(struct net_hold *h, bool hold)
{
	char b[512];
	struct nlmsghdr *nlh = nfq_nlmsg_put(b, NFQNL_MSG_CONFIG, h->queue_num);

	nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, HOLD_COPY_LEN);
	nfq_nlmsg_cfg_put_qmaxlen(nlh, hold ? h->queue_max : 0);
	/* Large segments stay whole. */
	mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO | (hold ? 0 : NFQA_CFG_F_FAIL_OPEN)));
	mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
	return nfq_request(h, nlh);
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
	return r < 0 ? r : queue_mode(h, false);
}

static int by_flow(const void *a, const void *b)
{
	const struct held *x = a, *y = b;

	if (x->flow != y->flow)
		return x->flow < y->flow ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Latest flow first (the flow whose last packet came last), each flow in arrival order. */
static int by_release(const void *a, const void *b)
{
	const struct held *x = a, *y = b;

	if (x->last != y->last)
		return x->last > y->last ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * One verdict per held packet, in release order. The kernel reinjects each
 * packet as its verdict comes, so this is the order in which they reach the
 * TAP. A packet gone meanwhile answers ENOENT, which handle_msgs ignores.
 */
static int accept_in_order(struct net_hold *h)
{
	char b[8192];
	size_t used = 0;
	uint32_t n = h->n_held;

	qsort(h->held, n, sizeof h->held[0], by_flow);
	for (uint32_t i = 0, j; i < n; i = j) {
		for (j = i; j < n && h->held[j].flow == h->held[i].flow; j++)
			;
		for (uint32_t k = i; k < j; k++)
			h->held[k].last = h->held[j - 1].seq;
	}
	qsort(h->held, n, sizeof h->held[0], by_release);
	for (uint32_t i = 0; i < n; i++) {
		struct nlmsghdr *nlh = nfq_nlmsg_put(b + used, NFQNL_MSG_VERDICT, h->queue_num);
		nfq_nlmsg_verdict_put(nlh, (int)h->held[i].id, NF_ACCEPT);
		used += NLMSG_ALIGN(nlh->nlmsg_len);
		if (i + 1 == n || used + 256 > sizeof b) {
			if (mnl_socket_sendto(h->nl, b, used) < 0)
				return -errno;
			used = 0;
		}
	}
	return 0;
}

/*
 * Accept everything held. After a window the freshest traffic goes first:
 * the flows in the order of their latest packet, newest first, each
 * flow's packets in the order they came. A guest resumed from a pause
 * answers what it finds in its queue one packet after the other, on a
 * cold start slowly; a client still waiting for an answer is the one
 * whose packet came last, while the oldest packets are the likeliest to
 * belong to attempts already given up (in bench/migrate the guest answered
 * 5-12 such SYNs before the live one, 2-14 ms of its time). More than
 * HOLD_ORDER_MAX packets go in arrival order. A batch verdict up to the
 * last id then takes whatever is left.
 */
static int accept_all(struct net_hold *h)
{
	char b[256];
	struct nlmsghdr *nlh;
	int r = 0;

	if (!h->any)
		return 0;
	if (h->n_held > 1 && h->n_held <= HOLD_ORDER_MAX)
		r = accept_in_order(h);
	h->n_held = 0;
	/* Accepts every queued packet with an id up to max_id, in order. */
	nlh = nfq_nlmsg_put(b, NFQNL_MSG_VERDICT_BATCH, h->queue_num);
	nfq_nlmsg_verdict_put(nlh, (int)h->max_id, NF_ACCEPT);
	h->any = false;
	if (mnl_socket_sendto(h->nl, nlh, nlh->nlmsg_len) < 0 && r == 0)
		r = -errno;
	return r;
}

static void add_queue_rule(struct nft_batch *b, const struct net_hold *h, int family, const char *table,
			   const char *chain, bool compat)
{
	struct nftnl_rule *rule = nft_rule_new(family, table, chain);

	nft_rule_oifname(rule, h->ifname, false);
	nft_rule_queue(rule, h->queue_num, compat);
	nft_batch_add_rule(b, rule);
}

/*
 * Whether the native queue expression exists, found out once: a rule in a
 * table that the same batch deletes again, so nothing is ever diverted.
 */
static int probe_native(const struct net_hold *h)
{
	int known = __atomic_load_n(&native_queue, __ATOMIC_RELAXED);
	struct nft_batch *b;
	int r;

	if (known)
		return known == 1;
	nft_batch_new(&b);
	nft_batch_add_table(b, NFPROTO_INET, PROBE_TABLE);
	nft_batch_add_chain(b, NFPROTO_INET, PROBE_TABLE, "probe", "filter", NF_INET_FORWARD, HOLD_PRIO);
	add_queue_rule(b, h, NFPROTO_INET, PROBE_TABLE, "probe", false);
	nft_batch_del_table(b, NFPROTO_INET, PROBE_TABLE);
	r = nft_batch_commit(b);
	nft_batch_free(b);
	if (r < 0 && r != -ENOENT && r != -EOPNOTSUPP)
		return r;
	__atomic_store_n(&native_queue, r < 0 ? 2 : 1, __ATOMIC_RELAXED);
	return r == 0;
}

/* RULES false: the tables and empty chains; true: the rules in them. */
static int commit_hold(struct net_hold *h, bool rules)
{
	static const int compat_families[] = { NFPROTO_IPV4, NFPROTO_IPV6 };
	static const int native_families[] = { NFPROTO_INET };
	const int *fam = h->compat ? compat_families : native_families;
	size_t nfam = h->compat ? 2 : 1;
	struct nft_batch *b;
	int r;

	nft_batch_new(&b);
	for (size_t i = 0; i < nfam; i++) {
		if (!rules)
			nft_batch_add_table(b, fam[i], HOLD_TABLE);
		for (size_t j = 0; j < ARRAY_SIZE(hold_hooks); j++) {
			if (rules)
				add_queue_rule(b, h, fam[i], HOLD_TABLE, hold_hooks[j].chain, h->compat);
			else
				nft_batch_add_chain(b, fam[i], HOLD_TABLE, hold_hooks[j].chain, "filter",
						    hold_hooks[j].hook, HOLD_PRIO);
		}
	}
	r = nft_batch_commit(b);
	nft_batch_free(b);
	return r;
}

/* Every hold table in the namespace, in one batch (deleting none costs nothing). */
static void remove_tables(void)
{
	struct nft_table_id *t = NULL;
	struct nft_batch *b;
	size_t n = 0;

	if (nft_list_tables(HOLD_TABLE, &t, &n) < 0 || n == 0) {
		free(t);
		return;
	}
	nft_batch_new(&b);
	for (size_t i = 0; i < n; i++)
		nft_batch_del_table(b, t[i].family, t[i].name);
	(void)nft_batch_commit(b);
	nft_batch_free(b);
	free(t);
}

static int hold_engage(struct net_hold *h)
{
	int r;

	if (h->engaged)
		return 0;
	h->win = (struct net_hold_stats){ .compat = h->compat };
	r = drain(h);
	h->n_dests = 0;
	h->n_held = 0;
	if (r >= 0)
		r = queue_mode(h, true);
	if (r >= 0 && !h->rules) {
		r = commit_hold(h, true);
		h->rules = r >= 0;
	}
	if (r < 0) {
		(void)queue_mode(h, false);
		return r;
	}
	h->window_start = now_ns();
	h->engaged = true;
	return 0;
}

/*
 * While no VM answered, the namespace may have tried to resolve the
 * guest's address (a packet sent before the hold was engaged): such an
 * entry is retried only at its next probe, up to a second later, while a
 * fresh one is resolved at once. Forget them, so the released packets reach
 * the guest now. With the guest's MAC known, the held packets' destinations
 * on the TAP's subnets get it directly: the guest, busy right after its
 * resume, took 15-25 ms to answer the request. Runs in the namespace (the
 * worker's thread); best effort.
 */
static void learn_neighbours(struct net_hold *h)
{
	if (!h->rt && net_nl_open(&h->rt) < 0)
		return;
	(void)net_neigh_flush_unresolved(h->rt, h->ifname);
	for (unsigned i = 0; h->have_mac && i < h->n_dests; i++)
		(void)net_neigh_set(h->rt, h->ifname, &h->dests[i], h->guest_mac);
}

static int hold_disengage(struct net_hold *h, bool expired)
{
	int r, r2;

	if (!h->engaged)
		return 0;
	/*
	 * The held packets go first (read to the last, so every destination
	 * is known before the neighbour table is set); then the queue passes
	 * everything, and what was queued in between (microseconds) goes last.
	 */
	r = drain(h);
	learn_neighbours(h);
	r2 = accept_all(h);
	r = r < 0 ? r : r2;
	r2 = queue_mode(h, false);
	r = r < 0 ? r : r2;
	r2 = drain(h);
	r = r < 0 ? r : r2;
	r2 = accept_all(h);
	r = r < 0 ? r : r2;
	h->engaged = false;
	h->win.window_ns = now_ns() - h->window_start;
	h->win.expired = expired;
	h->total.held += h->win.held;
	h->total.window_ns += h->win.window_ns;
	h->total.expired |= expired;
	return r;
}

static void signal_fd(int fd)
{
	uint64_t one = 1;

	(void)!write(fd, &one, sizeof one);
}

static void wait_fd(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
		;
}

/* Runs the caller's command; true when the worker is to end. */
static bool run_cmd(struct net_hold *h)
{
	bool end = false;

	wait_fd(h->cmd_fd);
	switch (h->cmd) {
	case HOLD_ENGAGE: {
		uint64_t start = now_ns();
		h->cmd_err = hold_engage(h);
		h->win.engage_ns = h->total.engage_ns = now_ns() - start;
		/* an engage not waited for (net_hold_engage_nowait) fails at the release */
		note_err(h, h->cmd_err);
		break;
	}
	case HOLD_DISENGAGE:
		h->cmd_err = hold_disengage(h, false);
		break;
	case HOLD_RELEASE:
		h->cmd_err = hold_disengage(h, false);
		/* Nothing is queued now, so unhooking drops nothing. */
		remove_tables();
		end = true;
		break;
	}
	return end;
}

static void hold_serve(struct net_hold *h)
{
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = mnl_socket_get_fd(h->nl), .events = POLLIN },
			{ .fd = h->cmd_fd, .events = POLLIN },
		};
		int timeout = -1;

		if (h->engaged) {
			uint64_t elapsed = now_ns() - h->window_start;
			if (elapsed >= h->max_window_ns) {
				note_err(h, hold_disengage(h, true));
				continue;
			}
			timeout = (int)((h->max_window_ns - elapsed + 999999) / 1000000);
		}
		if (poll(p, 2, timeout) < 0) {
			if (errno != EINTR)
				note_err(h, -errno);
			continue;
		}
		if (p[0].revents & POLLIN)
			note_err(h, read_packets(h));
		if (p[1].revents & POLLIN) {
			bool end = run_cmd(h);
			signal_fd(h->done_fd);
			if (end)
				return;
		}
	}
}

static int hold_setup(struct net_hold *h)
{
	int one = 1, sz = 8 << 20, r;

	if (setns(h->nsfd, CLONE_NEWNET) < 0)
		return -errno;
	h->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	if (!h->nl || mnl_socket_bind(h->nl, 0, MNL_SOCKET_AUTOPID) < 0)
		return -errno;
	h->portid = mnl_socket_get_portid(h->nl);
	(void)setsockopt(mnl_socket_get_fd(h->nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
	(void)mnl_socket_setsockopt(h->nl, NETLINK_NO_ENOBUFS, &one, sizeof one);
	r = queue_bind(h);
	if (r < 0)
		return r;
	/* Tables left by a holder that died are stale: the queue was free. */
	remove_tables();
	r = probe_native(h);
	if (r < 0)
		return r;
	h->compat = h->total.compat = !r;
	r = commit_hold(h, false);
	if (r < 0)
		remove_tables();
	/* opening it at the release took 0.04-0.15 ms of a migration's pause */
	if (r >= 0 && net_nl_open(&h->rt) < 0)
		h->rt = NULL;
	return r;
}

static void *hold_thread(void *arg)
{
	struct net_hold *h = arg;
	_cleanup_(mnl_socket_closep) struct mnl_socket *nl = NULL;

	thread_name("net-hold");
	h->start_err = hold_setup(h);
	nl = h->nl;
	signal_fd(h->done_fd);
	if (h->start_err >= 0)
		hold_serve(h);
	h->nl = NULL;
	net_nl_close(h->rt);
	h->rt = NULL;
	return NULL;
}

static void hold_free(struct net_hold *h)
{
	if (h->nsfd >= 0)
		close(h->nsfd);
	if (h->cmd_fd >= 0)
		close(h->cmd_fd);
	if (h->done_fd >= 0)
		close(h->done_fd);
	free(h->buf);
	free(h);
}

static void hold_set_opts(struct net_hold *h, const struct net_hold_opts *opts)
{
	h->queue_num = opts && opts->queue_num ? opts->queue_num : NET_HOLD_QUEUE_NUM;
	h->queue_max = opts && opts->queue_max ? opts->queue_max : NET_HOLD_QUEUE_MAX;
	h->max_window_ns = opts && opts->max_window_ns ? opts->max_window_ns : NET_HOLD_MAX_WINDOW_NS;
	/* The kernel keeps held packets in memory: bound both. */
	if (h->queue_max > NET_HOLD_QUEUE_LIMIT)
		h->queue_max = NET_HOLD_QUEUE_LIMIT;
	if (h->max_window_ns > NET_HOLD_WINDOW_LIMIT_NS)
		h->max_window_ns = NET_HOLD_WINDOW_LIMIT_NS;
}

int net_hold_prepare(const char *netns, const struct net_hold_opts *opts, struct net_hold **out)
{
	struct net_hold *h;
	const char *ifname = opts && opts->interface ? opts->interface : "tap0";
	int r;

	if (strlen(ifname) >= IFNAMSIZ)
		return -EINVAL;
	h = xcalloc(1, sizeof *h);
	h->nsfd = h->cmd_fd = h->done_fd = -EBADF;
	snprintf(h->ifname, sizeof h->ifname, "%s", ifname);
	hold_set_opts(h, opts);
	h->buf = xcalloc(1, RECV_BUF);
	h->nsfd = netns_open(netns);
	if (h->nsfd < 0) {
		r = h->nsfd;
		goto fail;
	}
	h->cmd_fd = eventfd(0, EFD_CLOEXEC);
	h->done_fd = eventfd(0, EFD_CLOEXEC);
	if (h->cmd_fd < 0 || h->done_fd < 0) {
		r = -errno;
		goto fail;
	}
	r = -pthread_create(&h->thread, NULL, hold_thread, h);
	if (r < 0)
		goto fail;
	wait_fd(h->done_fd);
	if (h->start_err < 0) {
		r = h->start_err;
		pthread_join(h->thread, NULL);
		goto fail;
	}
	*out = h;
	return 0;
fail:
	hold_free(h);
	return r;
}

/* The worker's answer to the command posted last; 0 when there is none outstanding. */
static int hold_wait(struct net_hold *h)
{
	if (!h->posted)
		return 0;
	wait_fd(h->done_fd);
	h->posted = false;
	return h->cmd_err;
}

static void hold_post(struct net_hold *h, enum hold_cmd cmd)
{
	(void)hold_wait(h);
	h->cmd = cmd;
	h->posted = true;
	signal_fd(h->cmd_fd);
}

static int hold_call(struct net_hold *h, enum hold_cmd cmd)
{
	hold_post(h, cmd);
	return hold_wait(h);
}

void net_hold_set_guest_mac(struct net_hold *h, const uint8_t mac[6])
{
	/* Read by the worker only inside a command, which the eventfds order after this. */
	(void)hold_wait(h);
	h->have_mac = mac != NULL;
	if (mac)
		memcpy(h->guest_mac, mac, sizeof h->guest_mac);
}

int net_hold_engage(struct net_hold *h)
{
	if (!h)
		return -EINVAL;
	return hold_call(h, HOLD_ENGAGE);
}

void net_hold_engage_nowait(struct net_hold *h)
{
	if (h)
		hold_post(h, HOLD_ENGAGE);
}

int net_hold_disengage(struct net_hold *h, struct net_hold_stats *stats)
{
	int r;

	if (!h)
		return -EINVAL;
	r = hold_call(h, HOLD_DISENGAGE);
	if (stats)
		*stats = h->win;
	return r;
}

int net_hold_release(struct net_hold *h, struct net_hold_stats *stats)
{
	int r;

	if (!h)
		return -EINVAL;
	r = hold_call(h, HOLD_RELEASE);
	pthread_join(h->thread, NULL);
	if (r >= 0)
		r = h->err;
	if (stats)
		*stats = h->total;
	hold_free(h);
	return r;
}

int net_hold_start_opts(const char *netns, const struct net_hold_opts *opts, struct net_hold **out)
{
	struct net_hold *h;
	int r = net_hold_prepare(netns, opts, &h);

	if (r < 0)
		return r;
	r = net_hold_engage(h);
	if (r < 0) {
		(void)net_hold_release(h, NULL);
		return r;
	}
	*out = h;
	return 0;
}

int net_hold_start(const char *netns, struct net_hold **out)
{
	return net_hold_start_opts(netns, NULL, out);
}
