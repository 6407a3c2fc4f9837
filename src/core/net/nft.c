/*
 * nftables through libmnl + libnftnl (see nft.h). Each commit opens its own
 * netlink socket in the calling thread's namespace, sends one batch and reads
 * back the kernel's verdict on it.
 */
#include "config.h"

#include <errno.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/xt_NFQUEUE.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>

#include "core/log.h"
#include "core/net/nft.h"
#include "core/util.h"

/* Room kept free for the next message; a drafter rule is far smaller. */
#define MSG_ROOM 16384
/* A batch larger than this is a bug in the caller, not a reason to allocate. */
#define BATCH_MAX (8u << 20)
/* Receive buffer: the kernel's dump messages never exceed 32 KiB. */
#define RECV_BUF 65536

struct nft_batch {
	char *buf;
	size_t len, cap;
	uint32_t seq;
	size_t nmsg;
	bool overflow;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(struct mnl_socket *, mnl_socket_close)

static uint32_t next_seq(void)
{
	static uint32_t seq;

	if (!seq)
		seq = (uint32_t)time(NULL);
	return __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
}

static bool reserve(struct nft_batch *b)
{
	if (b->cap - b->len >= MSG_ROOM)
		return true;
	if (b->cap * 2 > BATCH_MAX) {
		b->overflow = true;
		return false;
	}
	b->buf = xreallocarray(b->buf, b->cap * 2, 1);
	memset(b->buf + b->cap, 0, b->cap);
	b->cap *= 2;
	return true;
}

static void advance(struct nft_batch *b, struct nlmsghdr *nlh)
{
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

int nft_batch_new(struct nft_batch **out)
{
	struct nft_batch *b = xcalloc(1, sizeof *b);

	b->cap = 4 * MSG_ROOM;
	b->buf = xcalloc(1, b->cap);
	b->seq = next_seq();
	advance(b, nftnl_batch_begin(b->buf, b->seq));
	*out = b;
	return 0;
}

void nft_batch_free(struct nft_batch *b)
{
	if (!b)
		return;
	free(b->buf);
	free(b);
}

size_t nft_batch_size(const struct nft_batch *b)
{
	return b->nmsg;
}

static struct nlmsghdr *msg_hdr(struct nft_batch *b, uint16_t type, int family, uint16_t flags)
{
	if (!reserve(b))
		return NULL;
	b->nmsg++;
	return nftnl_nlmsg_build_hdr(b->buf + b->len, type, (uint16_t)family, flags, next_seq());
}

static struct nftnl_table *table_obj(int family, const char *name)
{
	struct nftnl_table *t = nftnl_table_alloc();

	if (!t)
		abort();
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, (uint32_t)family);
	return t;
}

void nft_batch_add_table(struct nft_batch *b, int family, const char *table)
{
	struct nftnl_table *t = table_obj(family, table);
	struct nlmsghdr *nlh = msg_hdr(b, NFT_MSG_NEWTABLE, family, NLM_F_CREATE);

	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		advance(b, nlh);
	}
	nftnl_table_free(t);
}

void nft_batch_del_table(struct nft_batch *b, int family, const char *table)
{
	struct nftnl_table *t = table_obj(family, table);
	struct nlmsghdr *nlh = msg_hdr(b, NFT_MSG_DELTABLE, family, 0);

	if (nlh) {
		nftnl_table_nlmsg_build_payload(nlh, t);
		advance(b, nlh);
	}
	nftnl_table_free(t);
}

void nft_batch_add_chain(struct nft_batch *b, int family, const char *table,
			 const char *chain, const char *type, unsigned hook, int prio)
{
	struct nftnl_chain *c = nftnl_chain_alloc();
	struct nlmsghdr *nlh;

	if (!c)
		abort();
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, table);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, chain);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_FAMILY, (uint32_t)family);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, type);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	nlh = msg_hdr(b, NFT_MSG_NEWCHAIN, family, NLM_F_CREATE);
	if (nlh) {
		nftnl_chain_nlmsg_build_payload(nlh, c);
		advance(b, nlh);
	}
	nftnl_chain_free(c);
}

void nft_batch_add_rule(struct nft_batch *b, struct nftnl_rule *r)
{
	int family = (int)nftnl_rule_get_u32(r, NFTNL_RULE_FAMILY);
	struct nlmsghdr *nlh = msg_hdr(b, NFT_MSG_NEWRULE, family, NLM_F_CREATE | NLM_F_APPEND);

	if (nlh) {
		nftnl_rule_nlmsg_build_payload(nlh, r);
		advance(b, nlh);
	}
	nftnl_rule_free(r);
}

static struct mnl_socket *nfnl_open(void)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
	int sz = 4 << 20;

	if (!nl)
		return NULL;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		int e = errno;
		mnl_socket_close(nl);
		errno = e;
		return NULL;
	}
	/* Best effort: large batches and error reports need the room. */
	(void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz);
	(void)setsockopt(mnl_socket_get_fd(nl), SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
	return nl;
}

int nft_batch_commit(struct nft_batch *b)
{
	_cleanup_(mnl_socket_closep) struct mnl_socket *nl = NULL;
	_cleanup_free_ char *rbuf = NULL;
	int err = 0;

	if (b->overflow)
		return -E2BIG;
	if (b->nmsg == 0)
		return 0;
	if (!reserve(b))
		return -E2BIG;
	advance(b, nftnl_batch_end(b->buf + b->len, next_seq()));

	nl = nfnl_open();
	if (!nl)
		return -errno;
	if (mnl_socket_sendto(nl, b->buf, b->len) < 0)
		return -errno;
	rbuf = xcalloc(1, RECV_BUF);
	/*
	 * The kernel handles the whole batch inside sendmsg(), so its reports
	 * (errors only: no message asked for an ACK) are queued by now.
	 */
	for (;;) {
		ssize_t n = recv(mnl_socket_get_fd(nl), rbuf, RECV_BUF, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		int len = (int)n;
		for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; mnl_nlmsg_ok(h, len);
		     h = mnl_nlmsg_next(h, &len)) {
			if (h->nlmsg_type != NLMSG_ERROR)
				continue;
			struct nlmsgerr *e = mnl_nlmsg_get_payload(h);
			if (e->error < 0 && !err)
				err = e->error;
		}
	}
	return err;
}

static struct nftnl_expr *expr(const char *name)
{
	struct nftnl_expr *e = nftnl_expr_alloc(name);

	if (!e)
		abort();
	return e;
}

struct nftnl_rule *nft_rule_new(int family, const char *table, const char *chain)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		abort();
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, (uint32_t)family);
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	return r;
}

static void add_meta(struct nftnl_rule *r, uint32_t key, uint32_t dreg)
{
	struct nftnl_expr *e = expr("meta");

	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
	nftnl_rule_add_expr(r, e);
}

static void add_cmp(struct nftnl_rule *r, uint32_t sreg, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = expr("cmp");

	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, sreg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void add_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len, uint32_t dreg)
{
	struct nftnl_expr *e = expr("payload");

	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
	nftnl_rule_add_expr(r, e);
}

static void add_bitwise(struct nftnl_rule *r, uint32_t reg, const void *mask, uint32_t len)
{
	struct nftnl_expr *e = expr("bitwise");
	static const uint8_t zero[16];

	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, zero, len);
	nftnl_rule_add_expr(r, e);
}

static void add_ifname(struct nftnl_rule *r, uint32_t key, const char *ifname, bool negate)
{
	char name[IFNAMSIZ] = { 0 };

	strncpy(name, ifname, sizeof name - 1);
	add_meta(r, key, NFT_REG_1);
	add_cmp(r, NFT_REG_1, negate ? NFT_CMP_NEQ : NFT_CMP_EQ, name, sizeof name);
}

void nft_rule_iifname(struct nftnl_rule *r, const char *ifname, bool negate)
{
	add_ifname(r, NFT_META_IIFNAME, ifname, negate);
}

void nft_rule_oifname(struct nftnl_rule *r, const char *ifname, bool negate)
{
	add_ifname(r, NFT_META_OIFNAME, ifname, negate);
}

void nft_rule_nfproto(struct nftnl_rule *r, int family)
{
	uint8_t pf = family == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4;

	add_meta(r, NFT_META_NFPROTO, NFT_REG_1);
	add_cmp(r, NFT_REG_1, NFT_CMP_EQ, &pf, 1);
}

static void match_addr(struct nftnl_rule *r, const struct net_prefix *p, bool src)
{
	bool v6 = p->addr.family == AF_INET6;
	uint32_t len = v6 ? 16 : 4;
	uint32_t off = v6 ? (src ? 8 : 24) : (src ? 12 : 16);

	nft_rule_nfproto(r, p->addr.family);
	add_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, len, NFT_REG_1);
	if (p->plen < len * 8) {
		uint8_t mask[16] = { 0 };
		for (unsigned i = 0; i < p->plen; i++)
			mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
		add_bitwise(r, NFT_REG_1, mask, len);
	}
	add_cmp(r, NFT_REG_1, NFT_CMP_EQ, p->addr.a, len);
}

void nft_rule_saddr(struct nftnl_rule *r, const struct net_prefix *p)
{
	match_addr(r, p, true);
}

void nft_rule_daddr(struct nftnl_rule *r, const struct net_prefix *p)
{
	match_addr(r, p, false);
}

void nft_rule_l4proto(struct nftnl_rule *r, uint8_t proto)
{
	add_meta(r, NFT_META_L4PROTO, NFT_REG_1);
	add_cmp(r, NFT_REG_1, NFT_CMP_EQ, &proto, 1);
}

void nft_rule_dport(struct nftnl_rule *r, uint16_t port)
{
	uint16_t be = htons(port);

	add_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, NFT_REG_1);
	add_cmp(r, NFT_REG_1, NFT_CMP_EQ, &be, 2);
}

void nft_rule_ct_established(struct nftnl_rule *r)
{
	/* Conntrack state bits: 1 << (ctinfo + 1); established = 0, related = 1. */
	uint32_t mask = (1u << 1) | (1u << 2), zero = 0;
	struct nftnl_expr *e = expr("ct");

	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	add_bitwise(r, NFT_REG_1, &mask, 4);
	add_cmp(r, NFT_REG_1, NFT_CMP_NEQ, &zero, 4);
}

void nft_rule_daddr_local(struct nftnl_rule *r)
{
	struct nftnl_expr *e = expr("fib");
	uint32_t local = RTN_LOCAL;

	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
	nftnl_rule_add_expr(r, e);
	add_cmp(r, NFT_REG_1, NFT_CMP_EQ, &local, 4);
}

static void add_verdict(struct nftnl_rule *r, int verdict)
{
	struct nftnl_expr *e = expr("immediate");

	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	nftnl_rule_add_expr(r, e);
}

void nft_rule_accept(struct nftnl_rule *r)
{
	add_verdict(r, NF_ACCEPT);
}

void nft_rule_drop(struct nftnl_rule *r)
{
	add_verdict(r, NF_DROP);
}

static void add_nat(struct nftnl_rule *r, uint32_t type, const struct net_addr *addr, uint16_t port)
{
	struct nftnl_expr *e = expr("immediate");

	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_1);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, addr->a, (uint32_t)net_addr_len(addr));
	nftnl_rule_add_expr(r, e);
	if (port) {
		uint16_t be = htons(port);
		e = expr("immediate");
		nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_2);
		nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, &be, 2);
		nftnl_rule_add_expr(r, e);
	}
	e = expr("nat");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, type);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY,
			   addr->family == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFT_REG_1);
	if (port)
		nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFT_REG_2);
	nftnl_rule_add_expr(r, e);
}

void nft_rule_snat(struct nftnl_rule *r, const struct net_addr *addr, uint16_t port)
{
	add_nat(r, NFT_NAT_SNAT, addr, port);
}

void nft_rule_dnat(struct nftnl_rule *r, const struct net_addr *addr, uint16_t port)
{
	add_nat(r, NFT_NAT_DNAT, addr, port);
}

void nft_rule_masquerade(struct nftnl_rule *r)
{
	nftnl_rule_add_expr(r, expr("masq"));
}

void nft_rule_queue(struct nftnl_rule *r, uint16_t num, bool compat)
{
	struct nftnl_expr *e;

	if (!compat) {
		e = expr("queue");
		nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_NUM, num);
		nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_TOTAL, 1);
		nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_FLAGS, NFT_QUEUE_FLAG_BYPASS);
		nftnl_rule_add_expr(r, e);
		return;
	}
	/* libnftnl keeps (and later frees) the info buffer it is given. */
	struct xt_NFQ_info_v3 *info = xcalloc(1, sizeof *info);
	info->queuenum = num;
	info->queues_total = 1;
	info->flags = NFQ_FLAG_BYPASS;
	e = expr("target");
	nftnl_expr_set_str(e, NFTNL_EXPR_TG_NAME, "NFQUEUE");
	nftnl_expr_set_u32(e, NFTNL_EXPR_TG_REV, 3);
	nftnl_expr_set(e, NFTNL_EXPR_TG_INFO, info, sizeof *info);
	nftnl_rule_add_expr(r, e);
}

void nft_rule_counter(struct nftnl_rule *r)
{
	nftnl_rule_add_expr(r, expr("counter"));
}

struct list_ctx {
	const char *prefix;
	struct nft_table_id *v;
	size_t n;
};

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
	struct list_ctx *ctx = data;
	struct nftnl_table *t = nftnl_table_alloc();
	const char *name;

	if (!t)
		return MNL_CB_ERROR;
	if (nftnl_table_nlmsg_parse(nlh, t) < 0) {
		nftnl_table_free(t);
		return MNL_CB_OK;
	}
	name = nftnl_table_get_str(t, NFTNL_TABLE_NAME);
	if (name && str_startswith(name, ctx->prefix) && ctx->n < 4096) {
		ctx->v = xreallocarray(ctx->v, ctx->n + 1, sizeof *ctx->v);
		ctx->v[ctx->n].family = (int)nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY);
		snprintf(ctx->v[ctx->n].name, sizeof ctx->v[ctx->n].name, "%s", name);
		ctx->n++;
	}
	nftnl_table_free(t);
	return MNL_CB_OK;
}

int nft_list_tables(const char *prefix, struct nft_table_id **out, size_t *n)
{
	_cleanup_(mnl_socket_closep) struct mnl_socket *nl = NULL;
	_cleanup_free_ char *buf = xcalloc(1, RECV_BUF);
	struct list_ctx ctx = { .prefix = prefix };
	struct nlmsghdr *nlh;
	uint32_t seq = next_seq(), portid;
	int r;

	nl = nfnl_open();
	if (!nl)
		return -errno;
	portid = mnl_socket_get_portid(nl);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_UNSPEC, NLM_F_DUMP, seq);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
		return -errno;
	for (;;) {
		ssize_t len = mnl_socket_recvfrom(nl, buf, RECV_BUF);
		if (len < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		r = mnl_cb_run(buf, (size_t)len, seq, portid, table_cb, &ctx);
		if (r == MNL_CB_STOP)
			break;
		if (r < 0) {
			r = -errno;
			goto fail;
		}
	}
	*out = ctx.v;
	*n = ctx.n;
	return 0;
fail:
	free(ctx.v);
	return r;
}

int nft_delete_table(int family, const char *table)
{
	struct nft_batch *b;
	int r;

	nft_batch_new(&b);
	nft_batch_del_table(b, family, table);
	r = nft_batch_commit(b);
	nft_batch_free(b);
	return r == -ENOENT ? 0 : r;
}

const char *nft_family_name(int family)
{
	switch (family) {
	case NFPROTO_INET:
		return "inet";
	case NFPROTO_IPV4:
		return "ip";
	case NFPROTO_IPV6:
		return "ip6";
	default:
		return "?";
	}
}
