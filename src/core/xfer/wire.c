/*
 * Encoding and validation of the migration wire format described in
 * docs/protocol.md. Decoders take untrusted bytes: each field is bounds-checked
 * against the payload length and the protocol's hard limits, and nothing here
 * allocates on behalf of the peer.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <zstd.h>

#include "core/util.h"
#include "core/xfer/wire.h"

/* ---- CRC32C ---- */

static uint32_t crc_table[8][256];
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/*
 * Appending N zero bytes to a CRC is a linear map of the 32-bit register, so
 * it is four table lookups once the images of the register's bytes are known.
 * That lets all-zero pages (most of a memory image) cost a zero test instead
 * of a checksum pass, and lets three independent streams be joined.
 */
#define CRC_PAGE 4096u
#define CRC_LANE 1344u /* three lanes of 1344 bytes + 64 bytes cover a page */
struct crc_shift {
	uint32_t t[4][256];
};
static struct crc_shift crc_shift_page, crc_shift_lane;

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len);

static void crc_shift_init(struct crc_shift *s, size_t n)
{
	static const uint8_t zeros[CRC_PAGE];
	uint32_t basis[32];

	for (int i = 0; i < 32; i++)
		basis[i] = crc_sw(1u << i, zeros, n);
	for (int k = 0; k < 4; k++)
		for (uint32_t b = 0; b < 256; b++) {
			uint32_t v = 0;
			for (int j = 0; j < 8; j++)
				if (b >> j & 1)
					v ^= basis[8 * k + j];
			s->t[k][b] = v;
		}
}

static inline uint32_t crc_shift(const struct crc_shift *s, uint32_t reg)
{
	return s->t[0][reg & 0xff] ^ s->t[1][(reg >> 8) & 0xff] ^ s->t[2][(reg >> 16) & 0xff] ^
	       s->t[3][reg >> 24];
}

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
	crc_shift_init(&crc_shift_page, CRC_PAGE);
	crc_shift_init(&crc_shift_lane, CRC_LANE);
#if defined(__x86_64__)
	__builtin_cpu_init();
	crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		v ^= crc;
		crc = crc_table[7][v & 0xff] ^ crc_table[6][(v >> 8) & 0xff] ^
		      crc_table[5][(v >> 16) & 0xff] ^ crc_table[4][(v >> 24) & 0xff] ^
		      crc_table[3][(v >> 32) & 0xff] ^ crc_table[2][(v >> 40) & 0xff] ^
		      crc_table[1][(v >> 48) & 0xff] ^ crc_table[0][v >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
	return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hw_run(uint32_t crc, const uint8_t *p,
							      size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}

/* One page as three interleaved streams: the crc32 instruction's latency,
 * not its throughput, limits a single stream. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw_page(uint32_t crc, const uint8_t *p)
{
	uint64_t a = crc, b = 0, c = 0;
	const uint8_t *pb = p + CRC_LANE, *pc = p + 2 * CRC_LANE;

	for (size_t i = 0; i < CRC_LANE; i += 8) {
		uint64_t va, vb, vc;
		memcpy(&va, p + i, 8);
		memcpy(&vb, pb + i, 8);
		memcpy(&vc, pc + i, 8);
		a = __builtin_ia32_crc32di(a, va);
		b = __builtin_ia32_crc32di(b, vb);
		c = __builtin_ia32_crc32di(c, vc);
	}
	uint32_t r = crc_shift(&crc_shift_lane, (uint32_t)a) ^ (uint32_t)b;
	r = crc_shift(&crc_shift_lane, r) ^ (uint32_t)c;
	return crc_hw_run(r, p + 3 * CRC_LANE, CRC_PAGE - 3 * CRC_LANE);
}
#endif

uint32_t xfer_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	pthread_once(&crc_once, crc_init);
	crc = ~crc;
	for (; len >= CRC_PAGE; p += CRC_PAGE, len -= CRC_PAGE) {
		if (mem_is_zero(p, CRC_PAGE))
			crc = crc_shift(&crc_shift_page, crc);
#if defined(__x86_64__)
		else if (crc_hw)
			crc = crc_hw_page(crc, p);
#endif
		else
			crc = crc_sw(crc, p, CRC_PAGE);
	}
#if defined(__x86_64__)
	if (crc_hw)
		return ~crc_hw_run(crc, p, len);
#endif
	return ~crc_sw(crc, p, len);
}

uint64_t xfer_digest_mix(uint64_t index, uint32_t crc)
{
	/* splitmix64 finaliser: spreads (index, crc) so that the sum over blocks
	 * changes when any block's content or position changes. */
	uint64_t z = index * 0x9E3779B97F4A7C15ull + crc + 1;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* ---- handshake and header ---- */

void xfer_hello_encode(uint8_t out[XFER_HELLO_LEN], const struct xfer_hello *h)
{
	memset(out, 0, XFER_HELLO_LEN);
	memcpy(out, XFER_MAGIC, XFER_MAGIC_LEN);
	xfer_put16(out + 8, h->version);
	xfer_put16(out + 10, h->role);
	xfer_put32(out + 12, h->caps);
	xfer_put32(out + 16, h->max_payload);
	xfer_put32(out + 20, xfer_crc32c(0, out, 20));
}

int xfer_hello_decode(const uint8_t in[XFER_HELLO_LEN], struct xfer_hello *h)
{
	if (memcmp(in, XFER_MAGIC, XFER_MAGIC_LEN) != 0)
		return -EPROTO;
	/* The version comes before the checksum test: a later version may lay
	 * out the rest differently but must keep magic and version in place. */
	h->version = xfer_get16(in + 8);
	h->role = xfer_get16(in + 10);
	h->caps = xfer_get32(in + 12);
	h->max_payload = xfer_get32(in + 16);
	if (h->version != XFER_VERSION)
		return -EPROTONOSUPPORT;
	if (xfer_get32(in + 20) != xfer_crc32c(0, in, 20))
		return -EPROTO;
	if (h->role != XFER_ROLE_SOURCE && h->role != XFER_ROLE_DEST)
		return -EPROTO;
	return 0;
}

void xfer_hdr_encode(uint8_t out[XFER_HDR_LEN], const struct xfer_hdr *h)
{
	xfer_put32(out, h->len);
	out[4] = h->type;
	out[5] = h->flags;
	xfer_put16(out + 6, h->dev);
	xfer_put32(out + 8, h->txid);
	xfer_put32(out + 12, xfer_crc32c(0, out, 12));
}

int xfer_hdr_decode(const uint8_t in[XFER_HDR_LEN], struct xfer_hdr *h)
{
	if (xfer_get32(in + 12) != xfer_crc32c(0, in, 12))
		return -EPROTO;
	h->len = xfer_get32(in);
	h->type = in[4];
	h->flags = in[5];
	h->dev = xfer_get16(in + 6);
	h->txid = xfer_get32(in + 8);
	if (h->type == 0 || h->type >= XFER_T__MAX)
		return -EPROTO;
	if (h->flags & ~XFER_F_KNOWN)
		return -EPROTO;
	if (h->len > XFER_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (h->dev > XFER_MAX_DEVICES)
		return -EPROTO;
	return 0;
}

/* ---- messages ---- */

int xfer_msg_decode(const struct xfer_hdr *h, const uint8_t *p, size_t len, struct xfer_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->hdr = *h;
	if (len != h->len)
		return -EPROTO;
	/* Which messages are about a device (dev >= 1) and which about the session (dev 0). */
	switch (h->type) {
	case XFER_T_DEVINFO:
	case XFER_T_HAVE:
	case XFER_T_BLOCK:
	case XFER_T_REQUEST:
	case XFER_T_DIRTY:
	case XFER_T_COMPLETED:
		if (h->dev == 0)
			return -EPROTO;
		break;
	case XFER_T_DEVS_DONE:
	case XFER_T_AUTHORITY:
	case XFER_T_DONE:
	case XFER_T_KEEPALIVE:
	case XFER_T_RESUMED:
	case XFER_T_READY:
		if (h->dev != 0)
			return -EPROTO;
		break;
	default:
		break;
	}

	switch (h->type) {
	case XFER_T_DEVINFO:
		if (len < 18)
			return -EPROTO;
		m->u.devinfo.size = xfer_get64(p);
		m->u.devinfo.block_size = xfer_get32(p + 8);
		m->u.devinfo.flags = xfer_get32(p + 12);
		m->u.devinfo.name_len = xfer_get16(p + 16);
		m->u.devinfo.name = (const char *)p + 18;
		if (m->u.devinfo.name_len == 0 || m->u.devinfo.name_len > XFER_MAX_NAME ||
		    len != 18u + m->u.devinfo.name_len)
			return -EPROTO;
		if (memchr(m->u.devinfo.name, 0, m->u.devinfo.name_len) ||
		    memchr(m->u.devinfo.name, '/', m->u.devinfo.name_len))
			return -EPROTO;
		if (m->u.devinfo.block_size < XFER_MIN_BLOCK_SIZE ||
		    m->u.devinfo.block_size > XFER_MAX_BLOCK_SIZE ||
		    (m->u.devinfo.block_size & (m->u.devinfo.block_size - 1)))
			return -EPROTO;
		if (m->u.devinfo.flags & ~XFER_DEV_SHARED_BASE)
			return -EPROTO;
		return 0;
	case XFER_T_DEVS_DONE:
		if (len != 4)
			return -EPROTO;
		m->u.devs_done.count = xfer_get32(p);
		if (m->u.devs_done.count > XFER_MAX_DEVICES)
			return -EPROTO;
		return 0;
	case XFER_T_HAVE:
		if (len < 4)
			return -EPROTO;
		m->u.have.count = xfer_get32(p);
		if (m->u.have.count > XFER_MAX_LIST || len != 4 + (size_t)m->u.have.count * 16)
			return -EPROTO;
		m->u.have.ranges = p + 4;
		return 0;
	case XFER_T_BLOCK:
		if (len < XFER_BLOCK_HDR_LEN)
			return -EPROTO;
		m->u.block.index = xfer_get64(p);
		m->u.block.enc = p[8];
		if (p[9] || p[10] || p[11])
			return -EPROTO;
		m->u.block.raw_len = xfer_get32(p + 12);
		m->u.block.crc = xfer_get32(p + 16);
		m->u.block.data = p + XFER_BLOCK_HDR_LEN;
		m->u.block.data_len = (uint32_t)(len - XFER_BLOCK_HDR_LEN);
		if (m->u.block.raw_len == 0 || m->u.block.raw_len > XFER_MAX_BLOCK_SIZE)
			return -EPROTO;
		switch (m->u.block.enc) {
		case XFER_ENC_RAW:
			if (m->u.block.data_len != m->u.block.raw_len)
				return -EPROTO;
			break;
		case XFER_ENC_ZERO:
			if (m->u.block.data_len != 0)
				return -EPROTO;
			break;
		case XFER_ENC_ZSTD:
			if (m->u.block.data_len == 0 || m->u.block.data_len >= m->u.block.raw_len)
				return -EPROTO;
			break;
		default:
			return -EPROTO;
		}
		return 0;
	case XFER_T_REQUEST:
		if (len != 12)
			return -EPROTO;
		m->u.request.index = xfer_get64(p);
		m->u.request.count = xfer_get32(p + 8);
		if (m->u.request.count == 0 || m->u.request.count > XFER_MAX_LIST)
			return -EPROTO;
		return 0;
	case XFER_T_DIRTY:
		if (len < 4)
			return -EPROTO;
		m->u.dirty.count = xfer_get32(p);
		if (m->u.dirty.count > XFER_MAX_LIST || len != 4 + (size_t)m->u.dirty.count * 8)
			return -EPROTO;
		m->u.dirty.blocks = p + 4;
		return 0;
	case XFER_T_AUTHORITY:
		if (len > XFER_MAX_AUTH_DATA)
			return -EPROTO;
		m->u.authority.data = p;
		m->u.authority.len = (uint32_t)len;
		return 0;
	case XFER_T_COMPLETED:
		if (len != 16)
			return -EPROTO;
		m->u.completed.blocks = xfer_get64(p);
		m->u.completed.digest = xfer_get64(p + 8);
		return 0;
	case XFER_T_DONE:
	case XFER_T_ACK:
	case XFER_T_READY:
		return len == 0 ? 0 : -EPROTO;
	case XFER_T_ABORT:
		if (len < 4)
			return -EPROTO;
		m->u.abort.code = xfer_get16(p);
		m->u.abort.reason_len = xfer_get16(p + 2);
		m->u.abort.reason = (const char *)p + 4;
		if (m->u.abort.reason_len > XFER_MAX_REASON || len != 4u + m->u.abort.reason_len)
			return -EPROTO;
		return 0;
	case XFER_T_KEEPALIVE:
		if (len != 4)
			return -EPROTO;
		m->u.keepalive.timeout_ms = xfer_get32(p);
		if (m->u.keepalive.timeout_ms &&
		    (m->u.keepalive.timeout_ms < XFER_MIN_TIMEOUT_MS ||
		     m->u.keepalive.timeout_ms > XFER_MAX_TIMEOUT_MS))
			return -EPROTO;
		return 0;
	case XFER_T_RESUMED:
		if (len != 8)
			return -EPROTO;
		m->u.resumed.realtime_ns = xfer_get64(p);
		return 0;
	default:
		return -EPROTO;
	}
}

int xfer_enc_devinfo(uint8_t *out, size_t cap, uint64_t size, uint32_t block_size,
		     uint32_t flags, const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > XFER_MAX_NAME)
		return -EINVAL;
	if (cap < 18 + n)
		return -ENOBUFS;
	xfer_put64(out, size);
	xfer_put32(out + 8, block_size);
	xfer_put32(out + 12, flags);
	xfer_put16(out + 16, (uint16_t)n);
	memcpy(out + 18, name, n);
	return (int)(18 + n);
}

int xfer_enc_u32(uint8_t *out, size_t cap, uint32_t v)
{
	if (cap < 4)
		return -ENOBUFS;
	xfer_put32(out, v);
	return 4;
}

int xfer_enc_u64(uint8_t *out, size_t cap, uint64_t v)
{
	if (cap < 8)
		return -ENOBUFS;
	xfer_put64(out, v);
	return 8;
}

int xfer_enc_request(uint8_t *out, size_t cap, uint64_t index, uint32_t count)
{
	if (cap < 12)
		return -ENOBUFS;
	xfer_put64(out, index);
	xfer_put32(out + 8, count);
	return 12;
}

int xfer_enc_completed(uint8_t *out, size_t cap, uint64_t blocks, uint64_t digest)
{
	if (cap < 16)
		return -ENOBUFS;
	xfer_put64(out, blocks);
	xfer_put64(out + 8, digest);
	return 16;
}

int xfer_enc_abort(uint8_t *out, size_t cap, uint16_t code, const char *reason)
{
	size_t n = reason ? strlen(reason) : 0;

	if (n > XFER_MAX_REASON)
		n = XFER_MAX_REASON;
	if (cap < 4 + n)
		return -ENOBUFS;
	xfer_put16(out, code);
	xfer_put16(out + 2, (uint16_t)n);
	if (n)
		memcpy(out + 4, reason, n);
	return (int)(4 + n);
}

int xfer_enc_dirty(uint8_t *out, size_t cap, const uint64_t *blocks, uint32_t n)
{
	if (n > XFER_MAX_LIST)
		return -EINVAL;
	if (cap < 4 + (size_t)n * 8)
		return -ENOBUFS;
	xfer_put32(out, n);
	for (uint32_t i = 0; i < n; i++)
		xfer_put64(out + 4 + 8 * (size_t)i, blocks[i]);
	return (int)(4 + (size_t)n * 8);
}

int xfer_enc_have(uint8_t *out, size_t cap, const struct xfer_range *r, uint32_t n)
{
	if (n > XFER_MAX_LIST)
		return -EINVAL;
	if (cap < 4 + (size_t)n * 16)
		return -ENOBUFS;
	xfer_put32(out, n);
	for (uint32_t i = 0; i < n; i++) {
		xfer_put64(out + 4 + 16 * (size_t)i, r[i].start);
		xfer_put64(out + 12 + 16 * (size_t)i, r[i].count);
	}
	return (int)(4 + (size_t)n * 16);
}

/* ---- blocks ---- */

struct xfer_coder {
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
};

struct xfer_coder *xfer_coder_new(void)
{
	struct xfer_coder *c = xcalloc(1, sizeof(*c));

	c->cctx = ZSTD_createCCtx();
	c->dctx = ZSTD_createDCtx();
	if (!c->cctx || !c->dctx) {
		xfer_coder_free(c);
		return NULL;
	}
	/* A peer's frame may not make us allocate a large window. */
	ZSTD_DCtx_setParameter(c->dctx, ZSTD_d_windowLogMax, 25);
	return c;
}

void xfer_coder_free(struct xfer_coder *c)
{
	if (!c)
		return;
	ZSTD_freeCCtx(c->cctx);
	ZSTD_freeDCtx(c->dctx);
	free(c);
}

/* CRC32C of LEN zero bytes; the last length asked for is remembered per thread,
 * since a device asks for its block size over and over. */
static uint32_t zero_crc(uint32_t len)
{
	static __thread uint32_t cached_len, cached_crc;
	static const uint8_t zeros[4096];

	if (cached_len != len || len == 0) {
		uint32_t crc = 0, left = len;
		while (left) {
			uint32_t n = left < sizeof(zeros) ? left : (uint32_t)sizeof(zeros);
			crc = xfer_crc32c(crc, zeros, n);
			left -= n;
		}
		cached_len = len;
		cached_crc = crc;
	}
	return cached_crc;
}

static void block_header(uint8_t *out, uint64_t index, uint8_t enc, uint32_t len, uint32_t crc)
{
	xfer_put64(out, index);
	out[8] = enc;
	out[9] = out[10] = out[11] = 0;
	xfer_put32(out + 12, len);
	xfer_put32(out + 16, crc);
}

int xfer_block_encode_zero(uint64_t index, uint32_t len, uint8_t *out, uint32_t *crc)
{
	*crc = zero_crc(len);
	block_header(out, index, XFER_ENC_ZERO, len, *crc);
	return XFER_BLOCK_HDR_LEN;
}

int xfer_block_encode(struct xfer_coder *c, uint64_t index, const void *data, uint32_t len,
		      bool try_compress, uint8_t *out, uint32_t *crc)
{
	uint32_t payload = 0;
	uint8_t enc = XFER_ENC_RAW;

	if (mem_is_zero(data, len))
		return xfer_block_encode_zero(index, len, out, crc);
	if (try_compress && c && c->cctx && len > 128) {
		/* Output capacity just below the input: zstd stops as soon as the
		 * result cannot be smaller, so incompressible blocks cost little.
		 * Level -1: on memory images (zero runs, code, random pages) it
		 * produces the same size as level 1 in about 70% of the time, and
		 * the sender's CPU is what limits a transfer over a fast link. */
		size_t n = ZSTD_compressCCtx(c->cctx, out + XFER_BLOCK_HDR_LEN, len - len / 16,
					     data, len, -1);
		if (!ZSTD_isError(n) && n > 0 && n < len) {
			enc = XFER_ENC_ZSTD;
			payload = (uint32_t)n;
		}
	}
	*crc = xfer_crc32c(0, data, len);
	if (enc == XFER_ENC_RAW) {
		memcpy(out + XFER_BLOCK_HDR_LEN, data, len);
		payload = len;
	}
	block_header(out, index, enc, len, *crc);
	return (int)(XFER_BLOCK_HDR_LEN + payload);
}

int xfer_block_decode(struct xfer_coder *c, const struct xfer_msg *m, void *out, size_t cap)
{
	uint32_t n = m->u.block.raw_len;

	if (cap < n)
		return -EPROTO;
	switch (m->u.block.enc) {
	case XFER_ENC_RAW:
		memcpy(out, m->u.block.data, n);
		break;
	case XFER_ENC_ZERO:
		memset(out, 0, n);
		return zero_crc(n) == m->u.block.crc ? 0 : -EBADMSG;
	case XFER_ENC_ZSTD: {
		unsigned long long fs = ZSTD_getFrameContentSize(m->u.block.data, m->u.block.data_len);
		if (fs != n)
			return -EPROTO;
		size_t r = ZSTD_decompressDCtx(c->dctx, out, n, m->u.block.data, m->u.block.data_len);
		if (ZSTD_isError(r) || r != n)
			return -EPROTO;
		break;
	}
	default:
		return -EPROTO;
	}
	if (xfer_crc32c(0, out, n) != m->u.block.crc)
		return -EBADMSG;
	return 0;
}

const char *xfer_type_name(uint8_t type)
{
	static const char *const names[] = {
		[XFER_T_DEVINFO] = "DEVINFO", [XFER_T_DEVS_DONE] = "DEVS_DONE",
		[XFER_T_HAVE] = "HAVE",       [XFER_T_BLOCK] = "BLOCK",
		[XFER_T_REQUEST] = "REQUEST", [XFER_T_DIRTY] = "DIRTY",
		[XFER_T_AUTHORITY] = "AUTHORITY", [XFER_T_COMPLETED] = "COMPLETED",
		[XFER_T_DONE] = "DONE",       [XFER_T_ABORT] = "ABORT",
		[XFER_T_ACK] = "ACK",         [XFER_T_KEEPALIVE] = "KEEPALIVE",
		[XFER_T_RESUMED] = "RESUMED", [XFER_T_READY] = "READY",
	};
	if (type < ARRAY_SIZE(names) && names[type])
		return names[type];
	return "unknown";
}

const char *xfer_abort_name(uint16_t code)
{
	switch (code) {
	case XFER_ABORT_PROTOCOL: return "protocol error";
	case XFER_ABORT_VERSION: return "incompatible protocol version";
	case XFER_ABORT_DEVICE: return "device mismatch";
	case XFER_ABORT_IO: return "I/O error";
	case XFER_ABORT_CHECKSUM: return "checksum mismatch";
	case XFER_ABORT_CANCELLED: return "cancelled";
	default: return "unknown reason";
	}
}
