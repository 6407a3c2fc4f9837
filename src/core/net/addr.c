/*
 * Address arithmetic for the guest networks (see addr.h). Addresses are kept
 * as big-endian byte arrays so that IPv4 and IPv6 share one code path.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/net/addr.h"
#include "core/util.h"

size_t net_addr_len(const struct net_addr *a)
{
	return a->family == AF_INET6 ? 16 : 4;
}

static unsigned max_plen(const struct net_addr *a)
{
	return (unsigned)net_addr_len(a) * 8;
}

int net_addr_parse(const char *s, struct net_addr *out)
{
	memset(out, 0, sizeof *out);
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, out->a) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->a) == 1) {
		out->family = AF_INET6;
		return 0;
	}
	return -EINVAL;
}

static void mask_host_bits(struct net_addr *a, unsigned plen)
{
	size_t len = net_addr_len(a);

	for (size_t i = 0; i < len; i++) {
		unsigned bit = (unsigned)i * 8;
		if (bit >= plen)
			a->a[i] = 0;
		else if (plen - bit < 8)
			a->a[i] &= (uint8_t)(0xff << (8 - (plen - bit)));
	}
}

int net_prefix_parse(const char *s, bool allow_host_bits, struct net_prefix *out)
{
	char buf[NET_ADDR_STRLEN];
	const char *slash;
	uint32_t plen;
	int r;

	memset(out, 0, sizeof *out);
	if (!s)
		return -EINVAL;
	slash = strchr(s, '/');
	if (!slash) {
		r = net_addr_parse(s, &out->addr);
		if (r < 0)
			return r;
		out->plen = max_plen(&out->addr);
		return 0;
	}
	if ((size_t)(slash - s) >= sizeof buf)
		return -EINVAL;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = '\0';
	r = net_addr_parse(buf, &out->addr);
	if (r < 0)
		return r;
	r = parse_u32(slash + 1, &plen);
	if (r < 0 || plen > max_plen(&out->addr))
		return -EINVAL;
	out->plen = plen;
	struct net_addr masked = out->addr;
	mask_host_bits(&masked, plen);
	if (!allow_host_bits && !net_addr_eq(&masked, &out->addr))
		return -EINVAL;
	out->addr = masked;
	return 0;
}

void net_addr_format(const struct net_addr *a, char *buf, size_t len)
{
	if (!inet_ntop(a->family == AF_INET6 ? AF_INET6 : AF_INET, a->a, buf, (socklen_t)len))
		snprintf(buf, len, "?");
}

void net_prefix_format(const struct net_prefix *p, char *buf, size_t len)
{
	char a[NET_ADDR_STRLEN];

	net_addr_format(&p->addr, a, sizeof a);
	snprintf(buf, len, "%s/%u", a, p->plen);
}

bool net_addr_eq(const struct net_addr *a, const struct net_addr *b)
{
	return a->family == b->family && memcmp(a->a, b->a, net_addr_len(a)) == 0;
}

bool net_prefix_contains(const struct net_prefix *p, const struct net_addr *a)
{
	struct net_addr m = *a;

	if (a->family != p->addr.family)
		return false;
	mask_host_bits(&m, p->plen);
	return net_addr_eq(&m, &p->addr);
}

bool net_addr_same_subnet(const struct net_addr *a, const struct net_addr *b, unsigned plen)
{
	struct net_addr x = *a, y = *b;

	if (a->family != b->family)
		return false;
	mask_host_bits(&x, plen);
	mask_host_bits(&y, plen);
	return net_addr_eq(&x, &y);
}

bool net_addr_is_any(const struct net_addr *a)
{
	static const uint8_t zero[16];

	return memcmp(a->a, zero, net_addr_len(a)) == 0;
}

bool net_addr_is_loopback(const struct net_addr *a)
{
	static const uint8_t v6lo[16] = { [15] = 1 };

	if (a->family == AF_INET)
		return a->a[0] == 127;
	return memcmp(a->a, v6lo, 16) == 0;
}

/* Add N to the address, big-endian; -ERANGE on overflow past the end. */
static int addr_add(struct net_addr *a, uint64_t n)
{
	size_t len = net_addr_len(a);
	unsigned carry = 0;

	for (size_t i = len; i-- > 0;) {
		unsigned v = a->a[i] + (unsigned)(n & 0xff) + carry;
		a->a[i] = (uint8_t)v;
		carry = v >> 8;
		n >>= 8;
	}
	return (n || carry) ? -ERANGE : 0;
}

int net_prefix_host(const struct net_prefix *p, uint64_t n, struct net_addr *out)
{
	unsigned hostbits = max_plen(&p->addr) - p->plen;

	if (hostbits < 64 && n >> hostbits)
		return -ERANGE;
	*out = p->addr;
	return addr_add(out, n);
}

int net_prefix_subnet(const struct net_prefix *p, unsigned sub_plen, uint64_t n,
		      struct net_prefix *out)
{
	unsigned maxl = max_plen(&p->addr), bits, shift;
	struct net_addr a = p->addr;

	if (sub_plen < p->plen || sub_plen > maxl)
		return -ERANGE;
	bits = sub_plen - p->plen;
	if (bits < 64 && n >> bits)
		return -ERANGE;
	/* Shift N left by the host bits of the subnet, one byte at a time. */
	shift = maxl - sub_plen;
	for (unsigned i = 0; i < 64 && n; i += 8) {
		uint64_t chunk = n & 0xff;
		unsigned pos = shift + i; /* bit position of chunk's lowest bit */
		n >>= 8;
		for (unsigned b = 0; b < 8; b++) {
			if (!(chunk & (1u << b)))
				continue;
			unsigned bitpos = pos + b;
			if (bitpos >= maxl)
				return -ERANGE;
			size_t byte = net_addr_len(&a) - 1 - bitpos / 8;
			a.a[byte] |= (uint8_t)(1u << (bitpos % 8));
		}
	}
	out->addr = a;
	out->plen = sub_plen;
	return 0;
}

uint64_t net_prefix_count(const struct net_prefix *p, unsigned sub_plen)
{
	unsigned bits;

	if (sub_plen < p->plen || sub_plen > max_plen(&p->addr))
		return 0;
	bits = sub_plen - p->plen;
	return bits >= 32 ? UINT32_MAX : (uint64_t)1 << bits;
}

int net_mac_parse(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;

	if (!s || strlen(s) != 17)
		return -EINVAL;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4],
		   &v[5], &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		if (s[i * 3] == '+' || s[i * 3] == '-' || s[i * 3] == ' ')
			return -EINVAL;
		mac[i] = (uint8_t)v[i];
	}
	return 0;
}

int net_hostport_split(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h;
	size_t hl;
	uint32_t p;
	int r;

	if (!s || !*s)
		return -EINVAL;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(end - h);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return -EINVAL; /* bare IPv6 needs brackets */
		h = s;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return -EINVAL;
	r = parse_u32(colon + 1, &p);
	if (r == -ERANGE || (r == 0 && (p == 0 || p > 65535)))
		return -ERANGE;
	if (r < 0)
		return r;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}
