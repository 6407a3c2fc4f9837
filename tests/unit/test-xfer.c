/*
 * Unit tests of the wire codec (every message, every limit, truncated
 * frames, bad checksums), the handshake over a socketpair, and the
 * migration engine between two threads with in-memory devices.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/xfer/migrate.h"
#include "core/xfer/transport.h"
#include "core/xfer/wire.h"
#include "tests/tap.h"

static uint8_t pay[XFER_MAX_PAYLOAD];

static int decode(uint8_t type, uint8_t flags, uint16_t dev, const uint8_t *p, size_t len,
		  struct xfer_msg *m)
{
	struct xfer_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags, .dev = dev };
	return xfer_msg_decode(&h, p, len, m);
}

/* Every strict prefix of a valid payload must be refused. */
static bool prefixes_refused(uint8_t type, uint16_t dev, const uint8_t *p, size_t len)
{
	struct xfer_msg m;
	for (size_t k = 0; k < len; k++)
		if (decode(type, 0, dev, p, k, &m) != -EPROTO)
			return false;
	return true;
}

static void test_crc(void)
{
	is_int(xfer_crc32c(0, "123456789", 9), 0xE3069283u, "crc32c check value");
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7 + 3);
	uint32_t whole = xfer_crc32c(0, buf, sizeof(buf));
	uint32_t split = xfer_crc32c(xfer_crc32c(0, buf, 333), buf + 333, sizeof(buf) - 333);
	is_int(split, whole, "crc32c can be computed in pieces");
	ok(xfer_digest_mix(1, 5) != xfer_digest_mix(2, 5), "digest depends on the block index");
	ok(xfer_digest_mix(1, 5) != xfer_digest_mix(1, 6), "digest depends on the crc");
}

static void test_hello(void)
{
	uint8_t b[XFER_HELLO_LEN];
	struct xfer_hello h = { .version = XFER_VERSION, .role = XFER_ROLE_SOURCE, .caps = 3,
				.max_payload = XFER_MAX_PAYLOAD }, g;

	xfer_hello_encode(b, &h);
	is_int(xfer_hello_decode(b, &g), 0, "hello round trip");
	ok(g.role == XFER_ROLE_SOURCE && g.caps == 3, "hello fields");
	h.version = XFER_VERSION + 1;
	xfer_hello_encode(b, &h);
	is_int(xfer_hello_decode(b, &g), -EPROTONOSUPPORT, "other version refused");
	is_int(g.version, XFER_VERSION + 1, "other version reported");
	h.version = XFER_VERSION;
	xfer_hello_encode(b, &h);
	b[0] = 'X';
	is_int(xfer_hello_decode(b, &g), -EPROTO, "bad magic refused");
	xfer_hello_encode(b, &h);
	b[13] ^= 1;
	is_int(xfer_hello_decode(b, &g), -EPROTO, "hello checksum checked");
	h.role = 7;
	xfer_hello_encode(b, &h);
	is_int(xfer_hello_decode(b, &g), -EPROTO, "unknown role refused");
}

static void test_header(void)
{
	uint8_t b[XFER_HDR_LEN];
	struct xfer_hdr h = { .len = 100, .type = XFER_T_BLOCK, .flags = XFER_F_PRIORITY, .dev = 3,
			      .txid = 77 }, g;

	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), 0, "header round trip");
	ok(g.len == 100 && g.type == XFER_T_BLOCK && g.dev == 3 && g.txid == 77 &&
	   g.flags == XFER_F_PRIORITY, "header fields");
	b[2] ^= 0x40;
	is_int(xfer_hdr_decode(b, &g), -EPROTO, "header checksum checked");
	h.len = XFER_MAX_PAYLOAD + 1;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), -EMSGSIZE, "payload over the limit refused before allocation");
	h.len = XFER_MAX_PAYLOAD;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), 0, "payload at the limit accepted");
	h.len = 0;
	h.type = XFER_T__MAX;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), -EPROTO, "unknown type refused");
	h.type = 0;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), -EPROTO, "type 0 refused");
	h.type = XFER_T_ACK;
	h.flags = 0x10;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), -EPROTO, "unknown flag refused");
	h.flags = 0;
	h.dev = XFER_MAX_DEVICES + 1;
	xfer_hdr_encode(b, &h);
	is_int(xfer_hdr_decode(b, &g), -EPROTO, "device id over the limit refused");
}

static void test_messages(void)
{
	struct xfer_msg m;
	int n;

	/* DEVINFO */
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, 65536, XFER_DEV_SHARED_BASE, "memory");
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n, &m), 0, "DEVINFO decodes");
	ok(m.u.devinfo.size == 1 << 20 && m.u.devinfo.block_size == 65536 &&
	   m.u.devinfo.name_len == 6 && memcmp(m.u.devinfo.name, "memory", 6) == 0 &&
	   m.u.devinfo.flags == XFER_DEV_SHARED_BASE, "DEVINFO fields");
	ok(prefixes_refused(XFER_T_DEVINFO, 1, pay, (size_t)n), "truncated DEVINFO refused");
	is_int(decode(XFER_T_DEVINFO, 0, 0, pay, (size_t)n, &m), -EPROTO, "DEVINFO on device 0 refused");
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, 65535, 0, "memory");
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n, &m), -EPROTO, "block size not a power of two refused");
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, XFER_MAX_BLOCK_SIZE * 2, 0, "memory");
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n, &m), -EPROTO, "block size over the limit refused");
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, 65536, 0, "../etc");
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n, &m), -EPROTO, "name with a slash refused");
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, 65536, 0x80, "x");
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n, &m), -EPROTO, "unknown device flag refused");
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	is_int(xfer_enc_devinfo(pay, sizeof(pay), 1, 65536, 0, longname), -EINVAL, "long name not encoded");
	n = xfer_enc_devinfo(pay, sizeof(pay), 1 << 20, 65536, 0, "x");
	xfer_put16(pay + 16, 300);
	is_int(decode(XFER_T_DEVINFO, 0, 1, pay, (size_t)n + 299, &m), -EPROTO, "name length over the limit refused");

	/* DEVS_DONE */
	n = xfer_enc_u32(pay, sizeof(pay), 6);
	is_int(decode(XFER_T_DEVS_DONE, 0, 0, pay, (size_t)n, &m), 0, "DEVS_DONE decodes");
	is_int(m.u.devs_done.count, 6, "DEVS_DONE count");
	ok(prefixes_refused(XFER_T_DEVS_DONE, 0, pay, (size_t)n), "truncated DEVS_DONE refused");
	is_int(decode(XFER_T_DEVS_DONE, 0, 1, pay, (size_t)n, &m), -EPROTO, "DEVS_DONE on a device refused");
	n = xfer_enc_u32(pay, sizeof(pay), XFER_MAX_DEVICES + 1);
	is_int(decode(XFER_T_DEVS_DONE, 0, 0, pay, (size_t)n, &m), -EPROTO, "too many devices refused");

	/* HAVE */
	struct xfer_range r[2] = { { 0, 10 }, { 20, 5 } };
	n = xfer_enc_have(pay, sizeof(pay), r, 2);
	is_int(decode(XFER_T_HAVE, 0, 2, pay, (size_t)n, &m), 0, "HAVE decodes");
	ok(m.u.have.count == 2 && xfer_get64(m.u.have.ranges + 16) == 20 &&
	   xfer_get64(m.u.have.ranges + 24) == 5, "HAVE ranges");
	is_int(decode(XFER_T_HAVE, 0, 2, pay, (size_t)n - 1, &m), -EPROTO, "truncated HAVE refused");
	xfer_put32(pay, XFER_MAX_LIST + 1);
	is_int(decode(XFER_T_HAVE, 0, 2, pay, 4 + 16 * (size_t)(XFER_MAX_LIST + 1), &m), -EPROTO,
	       "HAVE list over the limit refused");

	/* REQUEST */
	n = xfer_enc_request(pay, sizeof(pay), 42, 3);
	is_int(decode(XFER_T_REQUEST, 0, 1, pay, (size_t)n, &m), 0, "REQUEST decodes");
	ok(m.u.request.index == 42 && m.u.request.count == 3, "REQUEST fields");
	ok(prefixes_refused(XFER_T_REQUEST, 1, pay, (size_t)n), "truncated REQUEST refused");
	n = xfer_enc_request(pay, sizeof(pay), 42, 0);
	is_int(decode(XFER_T_REQUEST, 0, 1, pay, (size_t)n, &m), -EPROTO, "empty REQUEST refused");

	/* DIRTY */
	uint64_t bl[3] = { 1, 5, 1ull << 40 };
	n = xfer_enc_dirty(pay, sizeof(pay), bl, 3);
	is_int(decode(XFER_T_DIRTY, XFER_F_ACK, 1, pay, (size_t)n, &m), 0, "DIRTY decodes");
	ok(m.u.dirty.count == 3 && xfer_get64(m.u.dirty.blocks + 16) == 1ull << 40, "DIRTY blocks");
	is_int(decode(XFER_T_DIRTY, 0, 1, pay, (size_t)n - 3, &m), -EPROTO, "truncated DIRTY refused");
	n = xfer_enc_dirty(pay, sizeof(pay), NULL, 0);
	is_int(decode(XFER_T_DIRTY, XFER_F_ACK, 1, pay, (size_t)n, &m), 0, "empty DIRTY list decodes");
	is_int(xfer_enc_dirty(pay, sizeof(pay), bl, XFER_MAX_LIST + 1), -EINVAL, "DIRTY over the limit not encoded");

	/* AUTHORITY, DONE, ACK */
	is_int(decode(XFER_T_AUTHORITY, XFER_F_ACK, 0, pay, 10, &m), 0, "AUTHORITY with data decodes");
	is_int(m.u.authority.len, 10, "AUTHORITY data length");
	is_int(decode(XFER_T_AUTHORITY, 0, 0, pay, XFER_MAX_AUTH_DATA + 1, &m), -EPROTO,
	       "AUTHORITY data over the limit refused");
	is_int(decode(XFER_T_AUTHORITY, 0, 1, pay, 0, &m), -EPROTO, "AUTHORITY on a device refused");
	is_int(decode(XFER_T_DONE, 0, 0, pay, 0, &m), 0, "DONE decodes");
	is_int(decode(XFER_T_DONE, 0, 0, pay, 1, &m), -EPROTO, "DONE with payload refused");
	is_int(decode(XFER_T_ACK, 0, 3, pay, 0, &m), 0, "ACK decodes");

	/* COMPLETED */
	n = xfer_enc_completed(pay, sizeof(pay), 7, 0x1122334455667788ull);
	is_int(decode(XFER_T_COMPLETED, 0, 1, pay, (size_t)n, &m), 0, "COMPLETED decodes");
	ok(m.u.completed.blocks == 7 && m.u.completed.digest == 0x1122334455667788ull, "COMPLETED fields");
	ok(prefixes_refused(XFER_T_COMPLETED, 1, pay, (size_t)n), "truncated COMPLETED refused");

	/* ABORT */
	n = xfer_enc_abort(pay, sizeof(pay), XFER_ABORT_CHECKSUM, "bad block");
	is_int(decode(XFER_T_ABORT, 0, 0, pay, (size_t)n, &m), 0, "ABORT decodes");
	ok(m.u.abort.code == XFER_ABORT_CHECKSUM && m.u.abort.reason_len == 9 &&
	   memcmp(m.u.abort.reason, "bad block", 9) == 0, "ABORT fields");
	ok(prefixes_refused(XFER_T_ABORT, 0, pay, (size_t)n), "truncated ABORT refused");
	is_str(xfer_abort_name(XFER_ABORT_VERSION), "incompatible protocol version", "abort names");
	is_int(decode(XFER_T_ABORT, 0, 0, pay, (size_t)n + 1, &m), -EPROTO, "ABORT with trailing bytes refused");

	/* RESUMED */
	n = xfer_enc_u64(pay, sizeof(pay), 1796526885672000000ULL);
	is_int(decode(XFER_T_RESUMED, 0, 0, pay, (size_t)n, &m), 0, "RESUMED decodes");
	ok(m.u.resumed.realtime_ns == 1796526885672000000ULL, "RESUMED time");
	ok(prefixes_refused(XFER_T_RESUMED, 0, pay, (size_t)n), "truncated RESUMED refused");
	is_int(decode(XFER_T_RESUMED, 0, 0, pay, (size_t)n + 1, &m), -EPROTO, "RESUMED with trailing bytes refused");
	is_int(decode(XFER_T_RESUMED, 0, 1, pay, (size_t)n, &m), -EPROTO, "RESUMED on a device refused");

	/* READY */
	is_int(decode(XFER_T_READY, 0, 0, pay, 0, &m), 0, "READY decodes");
	is_int(decode(XFER_T_READY, 0, 0, pay, 1, &m), -EPROTO, "READY with a payload refused");
	is_int(decode(XFER_T_READY, 0, 1, pay, 0, &m), -EPROTO, "READY on a device refused");
	is_str(xfer_type_name(XFER_T_READY), "READY", "READY has a name");

	/* KEEPALIVE */
	n = xfer_enc_u32(pay, sizeof(pay), 30000);
	is_int(decode(XFER_T_KEEPALIVE, 0, 0, pay, (size_t)n, &m), 0, "KEEPALIVE decodes");
	is_int(m.u.keepalive.timeout_ms, 30000, "KEEPALIVE timeout");
	ok(prefixes_refused(XFER_T_KEEPALIVE, 0, pay, (size_t)n), "truncated KEEPALIVE refused");
	is_int(decode(XFER_T_KEEPALIVE, 0, 0, pay, (size_t)n + 1, &m), -EPROTO, "KEEPALIVE with trailing bytes refused");
	is_int(decode(XFER_T_KEEPALIVE, 0, 1, pay, (size_t)n, &m), -EPROTO, "KEEPALIVE on a device refused");
	n = xfer_enc_u32(pay, sizeof(pay), 0);
	is_int(decode(XFER_T_KEEPALIVE, 0, 0, pay, (size_t)n, &m), 0, "KEEPALIVE without a timeout decodes");
	n = xfer_enc_u32(pay, sizeof(pay), XFER_MIN_TIMEOUT_MS - 1);
	is_int(decode(XFER_T_KEEPALIVE, 0, 0, pay, (size_t)n, &m), -EPROTO, "KEEPALIVE timeout under the limit refused");
	n = xfer_enc_u32(pay, sizeof(pay), XFER_MAX_TIMEOUT_MS + 1);
	is_int(decode(XFER_T_KEEPALIVE, 0, 0, pay, (size_t)n, &m), -EPROTO, "KEEPALIVE timeout over the limit refused");
	is_str(xfer_type_name(XFER_T_KEEPALIVE), "KEEPALIVE", "KEEPALIVE has a name");
}

static void test_blocks(void)
{
	static uint8_t data[65536], out[65536], frame[XFER_BLOCK_HDR_LEN + 65536];
	struct xfer_coder *c = xfer_coder_new();
	struct xfer_msg m;
	uint32_t crc;
	int n;

	ok(c != NULL, "coder created");
	/* all zero */
	memset(data, 0, sizeof(data));
	n = xfer_block_encode(c, 9, data, sizeof(data), true, frame, &crc);
	is_int(n, XFER_BLOCK_HDR_LEN, "zero block carries no data");
	is_int(frame[8], XFER_ENC_ZERO, "zero block encoding");
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "zero block decodes");
	memset(out, 0xff, sizeof(out));
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), 0, "zero block checksum");
	ok(memcmp(out, data, sizeof(data)) == 0, "zero block content");
	is_int(crc, xfer_crc32c(0, data, sizeof(data)), "zero block CRC is the CRC of zeros");
	frame[16] ^= 1;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "zero block with a wrong CRC parses");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), -EBADMSG, "zero block with a wrong CRC is refused");
	n = xfer_block_encode(c, 9, data, 1000, true, frame, &crc);
	is_int(crc, xfer_crc32c(0, data, 1000), "short zero block CRC");
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "short zero block decodes");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), 0, "short zero block checksum");

	/* compressible */
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i % 13 == 0 ? i : 0);
	n = xfer_block_encode(c, 10, data, sizeof(data), true, frame, &crc);
	is_int(frame[8], XFER_ENC_ZSTD, "compressible block is compressed");
	ok(n < (int)sizeof(data) / 2, "compressed block is smaller (%d bytes)", n);
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "zstd block decodes");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), 0, "zstd block checksum");
	ok(memcmp(out, data, sizeof(data)) == 0, "zstd block content");
	is_int(xfer_block_decode(c, &m, out, 100), -EPROTO, "short output buffer refused");
	n = xfer_block_encode(c, 10, data, sizeof(data), false, frame, &crc);
	is_int(frame[8], XFER_ENC_RAW, "compression can be skipped");

	/* random: raw */
	srand(1);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rand();
	n = xfer_block_encode(c, 11, data, sizeof(data), true, frame, &crc);
	is_int(frame[8], XFER_ENC_RAW, "random block is sent raw");
	is_int(n, XFER_BLOCK_HDR_LEN + (int)sizeof(data), "raw block size");
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "raw block decodes");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), 0, "raw block checksum");
	ok(memcmp(out, data, sizeof(data)) == 0, "raw block content");
	frame[XFER_BLOCK_HDR_LEN + 500] ^= 1;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), 0, "corrupted block still parses");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), -EBADMSG, "corrupted block fails its checksum");
	ok(prefixes_refused(XFER_T_BLOCK, 1, frame, XFER_BLOCK_HDR_LEN), "truncated block header refused");
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n - 1, &m), -EPROTO, "truncated raw block refused");
	frame[8] = 9;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), -EPROTO, "unknown encoding refused");
	frame[8] = XFER_ENC_ZERO;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), -EPROTO, "zero block with data refused");
	frame[8] = XFER_ENC_ZSTD;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), -EPROTO, "zstd block not smaller refused");
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, 1000, &m), 0, "garbage zstd block parses");
	is_int(xfer_block_decode(c, &m, out, sizeof(out)), -EPROTO, "garbage zstd block refused");
	frame[8] = XFER_ENC_RAW;
	frame[9] = 1;
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), -EPROTO, "reserved bytes checked");
	frame[9] = 0;
	xfer_put32(frame + 12, XFER_MAX_BLOCK_SIZE + 1);
	is_int(decode(XFER_T_BLOCK, 0, 1, frame, (size_t)n, &m), -EPROTO, "raw length over the limit refused");
	xfer_coder_free(c);
}

struct hs_arg {
	struct xfer_conn *c;
	int role;
	int r;
};

static void *hs_thread(void *p)
{
	struct hs_arg *a = p;
	a->r = xfer_handshake(a->c, (enum xfer_role)a->role, XFER_CAP_ZSTD);
	return NULL;
}

static void test_transport(void)
{
	char h[64], p[16];
	int sv[2];
	pthread_t t;

	is_int(xfer_split_hostport("127.0.0.1:1337", h, sizeof(h), p, sizeof(p)), 0, "split v4");
	ok(strcmp(h, "127.0.0.1") == 0 && strcmp(p, "1337") == 0, "v4 parts");
	is_int(xfer_split_hostport("[::1]:1337", h, sizeof(h), p, sizeof(p)), 0, "split v6");
	is_str(h, "::1", "v6 host");
	is_int(xfer_split_hostport(":1600", h, sizeof(h), p, sizeof(p)), 0, "split :port");
	is_str(h, "", "empty host means every address");
	is_int(xfer_split_hostport("::1:1337", h, sizeof(h), p, sizeof(p)), -EINVAL, "bare v6 refused");
	is_int(xfer_split_hostport("host:99999", h, sizeof(h), p, sizeof(p)), -EINVAL, "port range checked");
	is_int(xfer_split_hostport("host:12x", h, sizeof(h), p, sizeof(p)), -EINVAL, "port digits checked");
	is_int(xfer_split_hostport("host", h, sizeof(h), p, sizeof(p)), -EINVAL, "missing port refused");

	/* handshake; no timeouts, so that no keepalive interleaves with the raw frames below */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	struct xfer_conn *a = xfer_conn_from_fd(sv[0], "a"), *b = xfer_conn_from_fd(sv[1], "b");
	a->idle_ms = b->idle_ms = 0;
	struct hs_arg ha = { a, XFER_ROLE_SOURCE, 0 };
	pthread_create(&t, NULL, hs_thread, &ha);
	int rb = xfer_handshake(b, XFER_ROLE_DEST, XFER_CAP_SHARED_BASE);
	pthread_join(t, NULL);
	ok(ha.r == 0 && rb == 0, "handshake between source and destination");
	ok(a->hello.caps == (XFER_CAP_SHARED_BASE | XFER_CAP_KEEPALIVE) && b->hello.role == XFER_ROLE_SOURCE,
	   "capabilities exchanged, keepalives on both sides");
	ok(a->ka && b->ka, "both sides run a keepalive sender");

	/* frames; each side's first frame was its KEEPALIVE, consumed by xfer_recv */
	uint8_t *buf = NULL;
	size_t cap = 0;
	struct xfer_msg m;
	int n = xfer_enc_request(pay, sizeof(pay), 5, 1);
	is_int(xfer_send(a, XFER_T_REQUEST, 0, 1, 0, pay, (size_t)n), 0, "frame sent");
	is_int(xfer_recv(b, &buf, &cap, &m), 0, "frame received after the keepalive");
	ok(m.hdr.type == XFER_T_REQUEST && m.hdr.dev == 1, "keepalive not returned");
	is_int(b->peer_idle_ms, 0, "the peer's timeout learned from its KEEPALIVE");
	is_int(xfer_send(b, XFER_T_REQUEST, 0, 2, 0, pay, (size_t)n), 0, "frame sent");
	is_int(xfer_recv(a, &buf, &cap, &m), 0, "frame received");
	ok(m.hdr.type == XFER_T_REQUEST && m.hdr.dev == 2 && m.u.request.index == 5, "frame content");
	/* a header announcing more than the limit is refused without reading on */
	struct xfer_hdr big = { .len = XFER_MAX_PAYLOAD + 1, .type = XFER_T_BLOCK, .dev = 1 };
	uint8_t hb[XFER_HDR_LEN];
	xfer_hdr_encode(hb, &big);
	(void)!write(sv[1], hb, sizeof(hb));
	is_int(xfer_recv(a, &buf, &cap, &m), -EMSGSIZE, "oversized frame refused");
	ok(cap < XFER_MAX_PAYLOAD, "nothing allocated for the oversized frame");
	/* truncated frame: header promises 12 bytes, peer closes after 4 */
	struct xfer_hdr tr = { .len = 12, .type = XFER_T_REQUEST, .dev = 1 };
	xfer_hdr_encode(hb, &tr);
	(void)!write(sv[1], hb, sizeof(hb));
	(void)!write(sv[1], "abcd", 4);
	shutdown(sv[1], SHUT_WR);
	is_int(xfer_recv(a, &buf, &cap, &m), -ECONNRESET, "truncated frame is a reset");
	free(buf);
	xfer_conn_free(a);
	xfer_conn_free(b);

	/* version mismatch is reported on both sides */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	a = xfer_conn_from_fd(sv[0], "a");
	struct xfer_hello other = { .version = XFER_VERSION + 1, .role = XFER_ROLE_DEST };
	uint8_t hello[XFER_HELLO_LEN];
	xfer_hello_encode(hello, &other);
	(void)!write(sv[1], hello, sizeof(hello));
	is_int(xfer_handshake(a, XFER_ROLE_SOURCE, 0), -EPROTONOSUPPORT, "version mismatch refused");
	ok(strstr(a->err, "version 2") && strstr(a->err, "version 1"), "message names both versions: %s", a->err);
	uint8_t theirs[XFER_HELLO_LEN];
	ok(read(sv[1], theirs, sizeof(theirs)) == (ssize_t)sizeof(theirs), "our hello went out first");
	struct xfer_hello g;
	is_int(xfer_hello_decode(theirs, &g), 0, "so the other side can report the mismatch too");
	xfer_conn_free(a);
	close(sv[1]);

	/* a peer speaking TLS to a plaintext side */
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	a = xfer_conn_from_fd(sv[0], "a");
	uint8_t tlsish[XFER_HELLO_LEN] = { 0x16, 0x03, 0x01 };
	(void)!write(sv[1], tlsish, sizeof(tlsish));
	is_int(xfer_handshake(a, XFER_ROLE_SOURCE, 0), -EPROTO, "TLS bytes refused");
	ok(strstr(a->err, "TLS") != NULL, "and the reason says TLS: %s", a->err);
	xfer_conn_free(a);
	close(sv[1]);
}

/* ---- engine between two threads with memory devices ---- */

struct memdev {
	struct xfer_dev dev;
	uint8_t *data;
	uint64_t *dirty; /* bitmap set by the test's writer */
	pthread_mutex_t lock;
	int cycles_left_dirty;
	uint64_t have_blocks;
	uint32_t delivered, invalidated;
	uint64_t order[1024]; /* destination: blocks in the order delivered (the first 1024) */
	uint64_t next;        /* source: the full pass's position */
	size_t hot_pos;
	bool hot_on;          /* source: working_set_first was called */
};

static ssize_t md_read(struct xfer_dev *d, uint64_t b, void *buf)
{
	struct memdev *m = d->ctx;
	uint32_t len = xfer_dev_block_len(d, b);
	pthread_mutex_lock(&m->lock);
	memcpy(buf, m->data + b * d->block_size, len);
	pthread_mutex_unlock(&m->lock);
	return len;
}

static int md_sync(struct xfer_dev *d, uint64_t **blocks, size_t *n)
{
	struct memdev *m = d->ctx;
	uint64_t nb = xfer_dev_blocks(d);
	pthread_mutex_lock(&m->lock);
	/* The "writer": change a couple of blocks every cycle while it runs. */
	if (m->cycles_left_dirty > 0) {
		m->cycles_left_dirty--;
		for (int k = 0; k < 3; k++) {
			uint64_t b = (uint64_t)rand() % nb;
			m->data[b * d->block_size + 1] ^= 0x5a;
			m->dirty[b / 64] |= 1ull << (b % 64);
		}
	}
	*blocks = calloc(nb, 8);
	*n = 0;
	for (uint64_t b = 0; b < nb; b++)
		if (m->dirty[b / 64] >> (b % 64) & 1)
			(*blocks)[(*n)++] = b;
	memset(m->dirty, 0, (nb + 63) / 64 * 8);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int md_have(struct xfer_dev *d, struct xfer_range **r, size_t *n)
{
	struct memdev *m = d->ctx;
	(void)d;
	*r = calloc(1, sizeof(**r));
	(*r)[0] = (struct xfer_range){ 0, m->have_blocks };
	*n = m->have_blocks ? 1 : 0;
	return 0;
}

/* What the VM read first, which the engine puts at the head of the full pass. */
static const uint64_t hot_blocks[] = { 200, 40, 60 };
static int working_set_calls, working_set_suspended;
static int suspended;
static int md_working_set_first(struct xfer_dev *d)
{
	struct memdev *m = d->ctx;
	working_set_calls++;
	working_set_suspended = suspended;
	m->hot_on = !strcmp(d->name, "memory");
	return 0;
}

static int md_next_block(struct xfer_dev *d, uint64_t *block)
{
	struct memdev *m = d->ctx;
	if (m->hot_on && m->hot_pos < sizeof(hot_blocks) / sizeof(hot_blocks[0])) {
		*block = hot_blocks[m->hot_pos++];
		return 0;
	}
	if (m->next >= xfer_dev_blocks(d))
		return -ENOENT;
	*block = m->next++;
	return 0;
}

/* What the VMM read first (pre-copy: the final dirty blocks go in this order after AUTHORITY). */
static const uint64_t read_first[] = { 130, 5 };
static int md_read_order(struct xfer_dev *d, uint64_t **blocks, size_t *n)
{
	size_t k = strcmp(d->name, "memory") ? 0 : sizeof(read_first) / sizeof(read_first[0]);
	*blocks = malloc(sizeof(read_first));
	if (!*blocks)
		return -ENOMEM;
	memcpy(*blocks, read_first, k * sizeof(read_first[0]));
	*n = k;
	return 0;
}

static int authority_seen;
static int64_t first_after_authority = -1; /* memory block delivered first after AUTHORITY */
static int last_after_authority = -1;      /* block 255 of memory last came after AUTHORITY */
static int md_deliver(struct xfer_dev *d, uint64_t b, const void *data, size_t len)
{
	struct memdev *m = d->ctx;
	if (authority_seen && first_after_authority < 0 && !strcmp(d->name, "memory"))
		first_after_authority = (int64_t)b;
	if (b == 255 && !strcmp(d->name, "memory"))
		last_after_authority = authority_seen;
	memcpy(m->data + b * d->block_size, data, len);
	if (m->delivered < sizeof(m->order) / sizeof(m->order[0]))
		m->order[m->delivered] = b;
	m->delivered++;
	return 0;
}

static void md_present(struct xfer_dev *d, uint64_t s, uint64_t c)
{
	struct memdev *m = d->ctx;
	(void)s;
	m->have_blocks += c;
	(void)d;
}

static int md_invalidate(struct xfer_dev *d, const uint64_t *b, size_t n)
{
	struct memdev *m = d->ctx;
	(void)b;
	(void)d;
	m->invalidated += (uint32_t)n;
	return 0;
}

static const struct xfer_dev_ops md_ops = {
	.read_block = md_read,
	.next_block = md_next_block,
	.working_set_first = md_working_set_first,
	.read_order = md_read_order,
	.sync_dirty = md_sync,
	.have = md_have,
	.deliver = md_deliver,
	.mark_present = md_present,
	.invalidate = md_invalidate,
};

static void md_init(struct memdev *m, const char *name, uint64_t size, uint32_t bs)
{
	memset(m, 0, sizeof(*m));
	m->dev.ops = &md_ops;
	m->dev.ctx = m;
	m->dev.name = name;
	m->dev.size = size;
	m->dev.block_size = bs;
	m->dev.max_dirty_blocks = 1;
	m->dev.min_cycles = 2;
	m->dev.max_cycles = 6;
	m->data = calloc(1, size);
	m->dirty = calloc((xfer_dev_blocks(&m->dev) + 63) / 64, 8);
	pthread_mutex_init(&m->lock, NULL);
}

static void md_free(struct memdev *m)
{
	free(m->data);
	free(m->dirty);
	pthread_mutex_destroy(&m->lock);
}

static struct memdev src_devs[2], dst_devs[2];
static int resumed, handed_over, flushes;
static unsigned suspend_us;   /* how long the suspend hook takes */
static bool engine_timeouts; /* run_engine over connections with 1 s timeouts */
static bool engine_postcopy; /* run_engine with a post-copy-only source */

/* A connection over a socketpair that waits in poll() like a dialled one (timeouts apply). */
static struct xfer_conn *timed_conn(int fd, const char *name)
{
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	struct xfer_conn *c = xfer_conn_from_fd(fd, name);
	c->idle_ms = 1000;
	return c;
}

static int h_flush(void *ctx) { (void)ctx; flushes++; return 0; }
static int told, told_before_suspend;
/* BeforeSuspend: the "guest" writes 20 blocks of memory before it is paused. */
static int h_before_suspend(void *ctx)
{
	struct memdev *m = &src_devs[0];

	(void)ctx;
	told++;
	told_before_suspend = !suspended;
	pthread_mutex_lock(&m->lock);
	for (uint64_t b = 100; b < 120; b++) {
		m->data[b * m->dev.block_size + 7] ^= 0xa5;
		m->dirty[b / 64] |= 1ull << (b % 64);
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}
/* The suspend writes memory blocks 5, 130 and 255 (the last), as a VM's state and stamp. */
static int h_suspend(void *ctx)
{
	struct memdev *m = &src_devs[0];

	(void)ctx;
	suspended++;
	pthread_mutex_lock(&m->lock);
	for (uint64_t b = 5; b < 256; b += 125) {
		m->data[b * m->dev.block_size + 3] ^= 0x3c;
		m->dirty[b / 64] |= 1ull << (b % 64);
	}
	pthread_mutex_unlock(&m->lock);
	usleep(suspend_us);
	return 0;
}
static int h_suspend_plain(void *ctx) { (void)ctx; return 0; }
/* What the destination reads first: the last block of memory. */
static void h_first(void *ctx, void (*emit)(void *arg, const char *name, uint64_t off, uint64_t len), void *arg)
{
	(void)ctx;
	emit(arg, "memory", 255 * 4096, 4096);
}
static int h_resume(void *ctx) { (void)ctx; resumed++; return 0; }
static int h_handover(void *ctx) { (void)ctx; handed_over++; return 0; }

struct src_arg {
	struct xfer_conn *c;
	struct xfer_dev *devs[2];
	bool read_only;
	int r;
	bool auth;
	struct xfer_stats st;
	char err[256];
};

static void *src_thread(void *p)
{
	struct src_arg *a = p;
	struct xfer_hooks h = { .flush = h_flush, .before_suspend = h_before_suspend, .suspend = h_suspend,
				.resume = h_resume, .handover = h_handover, .first = h_first };
	struct xfer_source_opts o = { .read_only = a->read_only, .postcopy = engine_postcopy };
	a->r = xfer_handshake(a->c, XFER_ROLE_SOURCE, XFER_CAP_ZSTD);
	if (a->r == 0)
		a->r = xfer_source_run(a->c, a->devs, 2, &o, &h, &a->st, &a->auth, a->err, sizeof(a->err));
	return NULL;
}

static int dst_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t bs,
		    uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	(void)ctx;
	(void)flags;
	if (id > 2 || dst_devs[id - 1].dev.size != size || dst_devs[id - 1].dev.block_size != bs ||
	    strcmp(dst_devs[id - 1].dev.name, name) != 0) {
		snprintf(err, errlen, "unexpected device '%s'", name);
		return -ENOENT;
	}
	*out = &dst_devs[id - 1].dev;
	return 0;
}

static int h_authority(void *ctx, const uint8_t *d, size_t n)
{
	(void)ctx;
	(void)d;
	(void)n;
	authority_seen++;
	return 0;
}

static uint64_t h_resumed(void *ctx)
{
	(void)ctx;
	return 1234567890123ULL;
}

static void run_engine(bool read_only, bool shared, uint32_t caps)
{
	int sv[2];
	pthread_t t;
	struct src_arg sa = { .read_only = read_only };
	struct xfer_stats st = { 0 };
	char err[256] = "";
	bool auth;

	srand(7);
	md_init(&src_devs[0], "memory", 1 << 20, 4096);
	md_init(&src_devs[1], "disk", 300000, 65536); /* last block short */
	md_init(&dst_devs[0], "memory", 1 << 20, 4096);
	md_init(&dst_devs[1], "disk", 300000, 65536);
	for (size_t i = 0; i < (1 << 20); i += 97)
		src_devs[0].data[i] = (uint8_t)i;
	for (size_t i = 0; i < 300000; i++)
		src_devs[1].data[i] = (uint8_t)rand();
	src_devs[0].cycles_left_dirty = 3;
	if (shared) {
		/* The destination already holds the first 16 blocks of memory. */
		src_devs[0].dev.flags = XFER_DEV_SHARED_BASE;
		src_devs[0].have_blocks = 16;
		memcpy(dst_devs[0].data, src_devs[0].data, 16 * 4096);
	}
	suspended = resumed = handed_over = flushes = authority_seen = told = 0;
	working_set_calls = working_set_suspended = 0;
	first_after_authority = last_after_authority = -1;

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	sa.c = engine_timeouts ? timed_conn(sv[0], "src") : xfer_conn_from_fd(sv[0], "src");
	sa.devs[0] = &src_devs[0].dev;
	sa.devs[1] = &src_devs[1].dev;
	struct xfer_conn *dc = engine_timeouts ? timed_conn(sv[1], "dst") : xfer_conn_from_fd(sv[1], "dst");
	pthread_create(&t, NULL, src_thread, &sa);
	int r = xfer_handshake(dc, XFER_ROLE_DEST, caps);
	struct xfer_dest_opts o = { .open = dst_open };
	struct xfer_hooks h = { .authority = h_authority, .resumed = h_resumed };
	if (r == 0)
		r = xfer_dest_run(dc, &o, &h, &st, &auth, err, sizeof(err));
	pthread_join(t, NULL);
	is_int(r, 0, "destination completed%s%s", err[0] ? ": " : "", err);
	is_int(sa.r, 0, "source completed%s%s", sa.err[0] ? ": " : "", sa.err);
	ok(memcmp(src_devs[0].data, dst_devs[0].data, 1 << 20) == 0, "memory device equal");
	ok(memcmp(src_devs[1].data, dst_devs[1].data, 300000) == 0, "disk device equal (short last block)");
	is_int(authority_seen, 1, "one authority event");
	ok(sa.st.dest_resumed_ns == 1234567890123ULL, "the destination's resume time reached the source (RESUMED)");
	if (read_only) {
		is_int(suspended, 0, "read-only source never suspends");
		is_int(st.blocks_have, 0, "no HAVE");
	} else if (engine_postcopy) {
		uint64_t sent = sa.st.blocks_raw + sa.st.blocks_zero + sa.st.blocks_zstd;
		is_int(suspended, 1, "post-copy: suspended once");
		is_int(handed_over, 1, "post-copy: handed over once");
		is_int(resumed, 0, "post-copy: not resumed");
		is_int(flushes, 1, "post-copy: no dirty cycle, one flush before the suspend");
		is_int(sa.st.cycles, 0, "post-copy: no cycles");
		ok(sent > 1 && sa.st.blocks_postcopy == sent - 1 && last_after_authority == 0,
		   "post-copy: every block went after AUTHORITY (%" PRIu64 " of %" PRIu64 ") but the one the hooks "
		   "name, with the final lists", sa.st.blocks_postcopy, sent);
		ok(sa.st.authority_ns && sa.st.suspend_ns && sa.st.authority_ns >= sa.st.suspend_ns,
		   "post-copy: suspended, then AUTHORITY");
		is_int(working_set_calls, 2, "post-copy: each device put its working set first once");
		is_int(working_set_suspended, 1, "post-copy: after the suspend (what the VM read until then)");
		/* only the final dirty blocks (and the one the hooks ask for) go before them */
		uint32_t at = 0;
		while (at < dst_devs[0].delivered && at < 1021 && dst_devs[0].order[at] != hot_blocks[0])
			at++;
		ok(at <= sa.st.final_dirty + 1 && dst_devs[0].order[at] == 200 &&
		   dst_devs[0].order[at + 1] == 40 && dst_devs[0].order[at + 2] == 60,
		   "post-copy: the blocks the VM read first (200 40 60) lead the full pass, after %u final "
		   "dirty blocks", at);
	} else {
		is_int(suspended, 1, "suspended once");
		ok(told == 1 && told_before_suspend, "BeforeSuspend once, before the suspend");
		is_int(last_after_authority, 0,
		       "the block the hooks name went with the final lists, before AUTHORITY");
		is_int((int)first_after_authority, 130,
		       "after AUTHORITY the final dirty blocks go in the order the VMM read them (130 before 5)");
		ok(sa.st.final_dirty < 20, "what the guest wrote at BeforeSuspend went in a closing cycle, not after "
		   "the suspend (%" PRIu64 " blocks in the final lists)", sa.st.final_dirty);
		is_int(handed_over, 1, "handed over once");
		is_int(resumed, 0, "not resumed");
		is_int(working_set_calls, 2, "pre-copy: each device put its working set first once");
		is_int(working_set_suspended, 0, "pre-copy: before the full pass, long before the suspend");
		ok(dst_devs[0].delivered > 3 && dst_devs[0].order[0] == 200 && dst_devs[0].order[1] == 40 &&
		   dst_devs[0].order[2] == 60, "pre-copy: the blocks the VM read first (200 40 60) arrived first");
		ok(flushes >= 2, "flushed before each dirty cycle (%d)", flushes);
		ok(sa.st.cycles >= 2 && sa.st.cycles <= 6, "dirty cycles within min/max (%u)", sa.st.cycles);
		ok(dst_devs[0].invalidated > 0, "dirty lists invalidated blocks at the destination");
	}
	if (shared && (caps & XFER_CAP_SHARED_BASE)) {
		is_int(dst_devs[0].have_blocks, 16, "shared blocks announced with HAVE");
		ok(sa.st.blocks_have == 16, "and not sent");
	} else if (shared) {
		is_int(dst_devs[0].have_blocks, 0, "no HAVE to a destination without the base");
	}
	xfer_conn_free(sa.c);
	xfer_conn_free(dc);
	for (int i = 0; i < 2; i++) {
		md_free(&src_devs[i]);
		md_free(&dst_devs[i]);
	}
}

/* The connection breaks during the full pass: the source resumes, nobody has authority. */
static void test_break(void)
{
	int sv[2];
	pthread_t t;
	struct src_arg sa = { 0 };
	uint8_t *buf = NULL;
	size_t cap = 0;
	struct xfer_msg m;

	md_init(&src_devs[0], "memory", 1 << 20, 4096);
	md_init(&src_devs[1], "disk", 1 << 20, 65536);
	resumed = handed_over = 0;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	sa.c = xfer_conn_from_fd(sv[0], "src");
	sa.devs[0] = &src_devs[0].dev;
	sa.devs[1] = &src_devs[1].dev;
	struct xfer_conn *dc = xfer_conn_from_fd(sv[1], "dst");
	pthread_create(&t, NULL, src_thread, &sa);
	xfer_handshake(dc, XFER_ROLE_DEST, 0);
	for (int i = 0; i < 10; i++)
		xfer_recv(dc, &buf, &cap, &m);
	xfer_conn_free(dc); /* the destination vanishes */
	pthread_join(t, NULL);
	ok(sa.r < 0, "source reports the failure: %s", sa.err);
	ok(!sa.auth, "authority not sent");
	is_int(resumed, 1, "source resumed its devices");
	is_int(handed_over, 0, "no handover");
	free(buf);
	xfer_conn_free(sa.c);
	md_free(&src_devs[0]);
	md_free(&src_devs[1]);
}

/* ---- priority lane: a request overtakes the bulk stream ---- */

static struct memdev prio_src, prio_dst;
static uint64_t *arrival; /* arrival rank of each block at the destination */
static uint64_t arrivals;
static struct xfer_conn *prio_conn;
static uint64_t prio_block;

static uint64_t *prio_requests; /* the source's request counter */

static int prio_deliver(struct xfer_dev *d, uint64_t b, const void *data, size_t len)
{
	struct memdev *m = d->ctx;
	memcpy(m->data + b * d->block_size, data, len);
	arrival[b] = ++arrivals;
	/*
	 * Hold the first bulk block until the source has taken the request in,
	 * so a starved reader thread (a loaded machine, sanitizers) cannot let
	 * the bulk stream run to the end first: the socket fills, the source
	 * waits, and what the test checks is only the order it then chooses.
	 */
	for (int i = 0; arrivals == 1 && i < 10000 && !__atomic_load_n(prio_requests, __ATOMIC_RELAXED);
	     i++)
		usleep(1000);
	return 0;
}

static const struct xfer_dev_ops prio_ops = {
	.read_block = md_read,
	.deliver = prio_deliver,
};

/* The destination asks for the last block as soon as it may use the device. */
static int prio_authority(void *ctx, const uint8_t *d, size_t n)
{
	(void)ctx;
	(void)d;
	(void)n;
	return xfer_request(prio_conn, 1, prio_block, 1);
}

/* A destination with one device, the memdev CTX. */
static int one_dev_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t bs,
			uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	struct memdev *m = ctx;

	(void)id;
	(void)name;
	(void)flags;
	(void)err;
	(void)errlen;
	if (size != m->dev.size || bs != m->dev.block_size)
		return -EINVAL;
	*out = &m->dev;
	return 0;
}

struct prio_src_arg {
	struct xfer_conn *c;
	int r;
	struct xfer_stats st;
};

static void *prio_src_thread(void *p)
{
	struct prio_src_arg *a = p;
	struct xfer_dev *devs[1] = { &prio_src.dev };
	struct xfer_source_opts o = { .read_only = true };
	char err[256];
	bool auth;

	a->r = xfer_handshake(a->c, XFER_ROLE_SOURCE, XFER_CAP_ZSTD);
	if (a->r == 0)
		a->r = xfer_source_run(a->c, devs, 1, &o, NULL, &a->st, &auth, err, sizeof(err));
	return NULL;
}

/*
 * Post-copy: the destination asks for a block as soon as the devices are
 * announced (its VMM reads its kernel); the source answers it while its
 * BeforeSuspend waits for the guest, not after AUTHORITY.
 */
/*
 * A post-copy migration of one 1 MiB memory device between two threads over
 * a socketpair, with the source's BeforeSuspend and the destination's
 * ready hook (at DEVS_DONE) given; pc_conn is the destination's
 * connection, for those hooks.
 */
struct pc_run {
	int (*before_suspend)(void *ctx);
	int (*ready)(void *ctx);
	uint32_t src_caps, dst_caps;
	bool timed; /* receive timeouts of 1 s on both sides */
	struct memdev src, dst;
	struct src_arg sa; /* the source's result */
	struct xfer_stats st; /* the destination's */
	char err[256];
	int r;
};
static struct xfer_conn *pc_conn;
static const struct xfer_dev_ops bs_ops;
static int bs_authority(void *ctx, const uint8_t *d, size_t n);

static void *pc_src_thread(void *p)
{
	struct pc_run *run = p;
	struct src_arg *a = &run->sa;
	struct xfer_dev *devs[1] = { &run->src.dev };
	struct xfer_hooks h = { .before_suspend = run->before_suspend, .suspend = h_suspend_plain,
				.handover = h_handover };
	struct xfer_source_opts o = { .postcopy = true };

	a->r = xfer_handshake(a->c, XFER_ROLE_SOURCE, run->src_caps);
	if (a->r == 0)
		a->r = xfer_source_run(a->c, devs, 1, &o, &h, &a->st, &a->auth, a->err, sizeof(a->err));
	return NULL;
}

/* Run the migration; the caller checks RUN's results, then calls pc_free. */
static void pc_run(struct pc_run *run, size_t stride)
{
	int sv[2];
	pthread_t t;
	bool auth;

	md_init(&run->src, "memory", 1 << 20, 4096);
	md_init(&run->dst, "memory", 1 << 20, 4096);
	run->src.dev.ops = &bs_ops;
	run->dst.dev.ops = &bs_ops;
	for (size_t i = 0; i < (1 << 20); i += stride)
		run->src.data[i] = (uint8_t)(i | 1);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	run->sa.c = run->timed ? timed_conn(sv[0], "src") : xfer_conn_from_fd(sv[0], "src");
	pc_conn = run->timed ? timed_conn(sv[1], "dst") : xfer_conn_from_fd(sv[1], "dst");
	pthread_create(&t, NULL, pc_src_thread, run);
	run->r = xfer_handshake(pc_conn, XFER_ROLE_DEST, run->dst_caps);
	struct xfer_dest_opts o = { .ctx = &run->dst, .open = one_dev_open, .ready = run->ready };
	struct xfer_hooks h = { .authority = bs_authority };
	if (run->r == 0)
		run->r = xfer_dest_run(pc_conn, &o, &h, &run->st, &auth, run->err, sizeof(run->err));
	pthread_join(t, NULL);
}

static void pc_free(struct pc_run *run)
{
	xfer_conn_free(run->sa.c);
	xfer_conn_free(pc_conn);
	md_free(&run->src);
	md_free(&run->dst);
}

static int bs_delivered, bs_before_auth, bs_served_in_hook;

static int bs_deliver(struct xfer_dev *d, uint64_t b, const void *data, size_t len)
{
	struct memdev *m = d->ctx;
	memcpy(m->data + b * d->block_size, data, len);
	if (b == 200 && !__atomic_load_n(&bs_delivered, __ATOMIC_SEQ_CST)) {
		bs_before_auth = !authority_seen;
		__atomic_store_n(&bs_delivered, 1, __ATOMIC_SEQ_CST);
	}
	return 0;
}

static const struct xfer_dev_ops bs_ops = {
	.read_block = md_read,
	.sync_dirty = md_sync,
	.deliver = bs_deliver,
	.invalidate = md_invalidate,
};

static int bs_ready(void *ctx)
{
	(void)ctx;
	return xfer_request(pc_conn, 1, 200, 1);
}

/* The guest takes its time: up to 3 s, or until the block asked for arrived. */
static int bs_before_suspend(void *ctx)
{
	(void)ctx;
	for (int i = 0; i < 3000 && !__atomic_load_n(&bs_delivered, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	bs_served_in_hook = __atomic_load_n(&bs_delivered, __ATOMIC_SEQ_CST);
	return 0;
}

static int bs_authority(void *ctx, const uint8_t *d, size_t n)
{
	(void)ctx;
	(void)d;
	(void)n;
	authority_seen = 1;
	return 0;
}

static void test_requests_during_before_suspend(void)
{
	struct pc_run run = { .before_suspend = bs_before_suspend, .ready = bs_ready,
			      .src_caps = XFER_CAP_ZSTD, .dst_caps = XFER_CAP_ZSTD };

	bs_delivered = bs_before_auth = bs_served_in_hook = authority_seen = 0;
	pc_run(&run, 61);
	is_int(run.r, 0, "BeforeSuspend: destination completed%s%s", run.err[0] ? ": " : "", run.err);
	is_int(run.sa.r, 0, "BeforeSuspend: source completed%s%s", run.sa.err[0] ? ": " : "", run.sa.err);
	ok(bs_served_in_hook && bs_before_auth,
	   "post-copy: a block asked for while BeforeSuspend waits arrives before it ends, before AUTHORITY");
	ok(memcmp(run.src.data, run.dst.data, 1 << 20) == 0, "BeforeSuspend: memory device equal");
	pc_free(&run);
}

static void test_priority(void)
{
	const uint64_t size = 64ull << 20;
	const uint32_t bs = 65536;
	int sv[2];
	pthread_t t;
	struct prio_src_arg sa = { 0 };
	struct xfer_stats st = { 0 };
	char err[256] = "";
	bool auth;

	md_init(&prio_src, "disk", size, bs);
	md_init(&prio_dst, "disk", size, bs);
	prio_src.dev.ops = &prio_ops;
	prio_dst.dev.ops = &prio_ops;
	srand(3);
	for (uint64_t i = 0; i < size; i += 4096)
		prio_src.data[i] = (uint8_t)(rand() | 1);
	uint64_t nb = size / bs;
	prio_block = nb - 1;
	arrival = calloc(nb, sizeof(*arrival));
	arrivals = 0;

	prio_requests = &sa.st.requests;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	sa.c = xfer_conn_from_fd(sv[0], "src");
	prio_conn = xfer_conn_from_fd(sv[1], "dst");
	pthread_create(&t, NULL, prio_src_thread, &sa);
	int r = xfer_handshake(prio_conn, XFER_ROLE_DEST, XFER_CAP_ZSTD);
	struct xfer_dest_opts o = { .ctx = &prio_dst, .open = one_dev_open };
	struct xfer_hooks h = { .authority = prio_authority };
	if (r == 0)
		r = xfer_dest_run(prio_conn, &o, &h, &st, &auth, err, sizeof(err));
	pthread_join(t, NULL);
	is_int(r, 0, "priority: destination completed%s%s", err[0] ? ": " : "", err);
	is_int(sa.r, 0, "priority: source completed");
	ok(memcmp(prio_src.data, prio_dst.data, size) == 0, "priority: device equal");
	ok(st.blocks_priority >= 1, "priority: the requested block came flagged PRIORITY (%" PRIu64 ")",
	   st.blocks_priority);
	ok(arrival[prio_block] < arrival[nb / 2],
	   "priority: the last block arrived %" PRIu64 "th, ahead of the bulk stream (block %" PRIu64
	   " arrived %" PRIu64 "th)", arrival[prio_block], nb / 2, arrival[nb / 2]);
	is_int(sa.st.requests, 1, "priority: the source served one request");
	free(arrival);
	xfer_conn_free(sa.c);
	xfer_conn_free(prio_conn);
	md_free(&prio_src);
	md_free(&prio_dst);
}

/* ---- stalled peers: keepalives and the receive timeout ---- */

/* A hand-made peer on a raw socket: its hello (with keepalives) and frames. */
static void raw_hello(int fd, enum xfer_role role)
{
	uint8_t b[XFER_HELLO_LEN];
	struct xfer_hello h = { .version = XFER_VERSION, .role = role,
				.caps = XFER_CAP_ZSTD | XFER_CAP_KEEPALIVE, .max_payload = XFER_MAX_PAYLOAD };

	xfer_hello_encode(b, &h);
	(void)!send(fd, b, sizeof(b), MSG_NOSIGNAL);
}

static void raw_frame(int fd, uint8_t type, uint16_t dev, const uint8_t *p, size_t len)
{
	uint8_t b[XFER_HDR_LEN + 64];
	struct xfer_hdr h = { .len = (uint32_t)len, .type = type, .dev = dev };

	xfer_hdr_encode(b, &h);
	memcpy(b + XFER_HDR_LEN, p, len);
	/* the peer may have given up and closed: an error, not SIGPIPE */
	(void)!send(fd, b, XFER_HDR_LEN + len, MSG_NOSIGNAL);
}

static void raw_keepalive(int fd)
{
	uint8_t p[4];
	xfer_put32(p, 1000);
	raw_frame(fd, XFER_T_KEEPALIVE, 0, p, sizeof(p));
}

/* A destination that says hello and then nothing, and reads nothing: the source gives up. */
static void test_stalled_destination(void)
{
	int sv[2];
	pthread_t t;
	struct src_arg sa = { 0 };

	md_init(&src_devs[0], "memory", 4 << 20, 65536);
	md_init(&src_devs[1], "disk", 1 << 20, 65536);
	for (size_t i = 0; i < (4u << 20); i++)
		src_devs[0].data[i] = (uint8_t)rand();
	resumed = handed_over = 0;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	sa.c = timed_conn(sv[0], "src");
	sa.devs[0] = &src_devs[0].dev;
	sa.devs[1] = &src_devs[1].dev;
	raw_hello(sv[1], XFER_ROLE_DEST);
	raw_keepalive(sv[1]);
	pthread_create(&t, NULL, src_thread, &sa);
	pthread_join(t, NULL);
	is_int(sa.r, -ETIMEDOUT, "stalled destination: the source gives up");
	ok(strstr(sa.err, "for 1s: ") && strstr(sa.err, "stopped answering"), "with a clear reason: %s", sa.err);
	ok(!sa.auth, "stalled destination: authority not sent");
	is_int(resumed, 1, "stalled destination: the source resumed its devices");
	xfer_conn_free(sa.c);
	close(sv[1]);
	md_free(&src_devs[0]);
	md_free(&src_devs[1]);
}

/* A source that announces its devices and goes silent: the destination fails, it does not hang. */
static void test_stalled_source(void)
{
	int sv[2];
	uint8_t p[64];
	struct xfer_stats st = { 0 };
	char err[256] = "";
	bool auth;
	int n;

	md_init(&dst_devs[0], "memory", 1 << 20, 4096);
	md_init(&dst_devs[1], "disk", 300000, 65536);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	struct xfer_conn *dc = timed_conn(sv[1], "dst");
	raw_hello(sv[0], XFER_ROLE_SOURCE);
	raw_keepalive(sv[0]);
	n = xfer_enc_devinfo(p, sizeof(p), 1 << 20, 4096, 0, "memory");
	raw_frame(sv[0], XFER_T_DEVINFO, 1, p, (size_t)n);
	n = xfer_enc_devinfo(p, sizeof(p), 300000, 65536, 0, "disk");
	raw_frame(sv[0], XFER_T_DEVINFO, 2, p, (size_t)n);
	n = xfer_enc_u32(p, sizeof(p), 2);
	raw_frame(sv[0], XFER_T_DEVS_DONE, 0, p, (size_t)n);
	int r = xfer_handshake(dc, XFER_ROLE_DEST, XFER_CAP_ZSTD);
	is_int(r, 0, "stalled source: handshake");
	struct xfer_dest_opts o = { .open = dst_open };
	r = xfer_dest_run(dc, &o, NULL, &st, &auth, err, sizeof(err));
	is_int(r, -ETIMEDOUT, "stalled source: the destination gives up");
	ok(strstr(err, "no message for 1s: the peer stopped answering") != NULL, "with a clear reason: %s", err);
	xfer_conn_free(dc);
	close(sv[0]);
	md_free(&dst_devs[0]);
	md_free(&dst_devs[1]);
}

/* A destination that reads everything and keeps sending keepalives, but never acknowledges. */
static int mute_fd;
static bool mute_stop;

static void *mute_dest(void *arg)
{
	uint8_t buf[65536];
	(void)arg;

	raw_hello(mute_fd, XFER_ROLE_DEST);
	while (!__atomic_load_n(&mute_stop, __ATOMIC_RELAXED)) {
		struct pollfd p = { .fd = mute_fd, .events = POLLIN };
		if (poll(&p, 1, 200) > 0 && read(mute_fd, buf, sizeof(buf)) <= 0)
			break;
		raw_keepalive(mute_fd);
	}
	return NULL;
}

static void test_unanswered(void)
{
	int sv[2];
	pthread_t t, m;
	struct src_arg sa = { 0 };

	md_init(&src_devs[0], "memory", 1 << 20, 65536);
	md_init(&src_devs[1], "disk", 1 << 20, 65536);
	resumed = 0;
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	sa.c = timed_conn(sv[0], "src");
	sa.devs[0] = &src_devs[0].dev;
	sa.devs[1] = &src_devs[1].dev;
	mute_fd = sv[1];
	mute_stop = false;
	pthread_create(&m, NULL, mute_dest, NULL);
	pthread_create(&t, NULL, src_thread, &sa);
	pthread_join(t, NULL);
	__atomic_store_n(&mute_stop, true, __ATOMIC_RELAXED);
	pthread_join(m, NULL);
	is_int(sa.r, -ETIMEDOUT, "no acknowledgement: the source gives up although keepalives come");
	ok(strstr(sa.err, "no acknowledgement for 1s") != NULL, "with a clear reason: %s", sa.err);
	is_int(resumed, 1, "no acknowledgement: the source resumed its devices");
	xfer_conn_free(sa.c);
	close(sv[1]);
	md_free(&src_devs[0]);
	md_free(&src_devs[1]);
}

/*
 * READY: a destination that starts a VM ahead of the handover announces
 * XFER_CAP_READY and says READY once its VMM waits; the source's freeze
 * (BeforeSuspend, suspend) waits for it, serving requests meanwhile. One
 * that never says it holds the freeze up only as long as the bound (the
 * receive timeout here, 1 s).
 */
static int rd_ready_sent, rd_suspended_after_ready, rd_send_ready;

static void *rd_ready_thread(void *arg)
{
	(void)arg;
	usleep(300 * 1000); /* the VMM starting */
	__atomic_store_n(&rd_ready_sent, 1, __ATOMIC_SEQ_CST);
	(void)xfer_send(pc_conn, XFER_T_READY, 0, 0, 0, NULL, 0);
	return NULL;
}

static int rd_ready(void *ctx)
{
	pthread_t t;

	(void)ctx;
	if (rd_send_ready && pthread_create(&t, NULL, rd_ready_thread, NULL) == 0)
		pthread_detach(t);
	return xfer_request(pc_conn, 1, 7, 1); /* what a starting VMM reads */
}

static int rd_before_suspend(void *ctx)
{
	(void)ctx;
	rd_suspended_after_ready = __atomic_load_n(&rd_ready_sent, __ATOMIC_SEQ_CST);
	return 0;
}

static void run_ready(bool send_ready)
{
	const char *what = send_ready ? "READY" : "no READY";
	struct pc_run run = { .before_suspend = rd_before_suspend, .ready = rd_ready, .timed = true,
			      .src_caps = XFER_CAP_ZSTD | XFER_CAP_READY,
			      .dst_caps = XFER_CAP_ZSTD | XFER_CAP_READY };

	rd_ready_sent = rd_suspended_after_ready = 0;
	rd_send_ready = send_ready;
	pc_run(&run, 67);
	is_int(run.r, 0, "%s: destination completed%s%s", what, run.err[0] ? ": " : "", run.err);
	is_int(run.sa.r, 0, "%s: source completed%s%s", what, run.sa.err[0] ? ": " : "", run.sa.err);
	if (send_ready) {
		ok(rd_suspended_after_ready, "READY: the source's BeforeSuspend ran only after the destination's READY");
		ok(run.sa.st.ready_wait_ns > 0, "READY: the source reports that it waited (%.0f ms)",
		   (double)run.sa.st.ready_wait_ns / 1e6);
	} else {
		ok(run.sa.st.ready_wait_ns >= 900000000ull,
		   "no READY: the freeze waited for the bound, the 1 s receive timeout (%.0f ms), and went ahead",
		   (double)run.sa.st.ready_wait_ns / 1e6);
	}
	ok(run.st.blocks_priority >= 1, "%s: the block asked for while the source waited came first", what);
	ok(memcmp(run.src.data, run.dst.data, 1 << 20) == 0, "%s: memory device equal", what);
	pc_free(&run);
}

static void test_timeout_setting(void)
{
	struct xfer_conn *c;

	xfer_transport_set_timeout(2500000000ull);
	c = xfer_conn_from_fd(-1, "x");
	is_int(c->idle_ms, 2500, "transport timeout applies to new connections");
	xfer_conn_free(c);
	xfer_transport_set_timeout(0);
	c = xfer_conn_from_fd(-1, "x");
	is_int(c->idle_ms, 0, "timeout 0: wait forever");
	xfer_conn_free(c);
	xfer_transport_set_timeout(30000000000ull);
}

int main(void)
{
	test_crc();
	test_hello();
	test_header();
	test_messages();
	test_blocks();
	test_transport();
	diag("engine: live source with dirty cycles");
	run_engine(false, false, XFER_CAP_ZSTD);
	diag("engine: read-only source");
	run_engine(true, false, XFER_CAP_ZSTD);
	diag("engine: shared base, destination holds it");
	run_engine(false, true, XFER_CAP_ZSTD | XFER_CAP_SHARED_BASE);
	diag("engine: shared base, destination without it");
	run_engine(false, true, XFER_CAP_ZSTD);
	diag("engine: post-copy only");
	engine_postcopy = true;
	run_engine(false, false, XFER_CAP_ZSTD);
	diag("engine: post-copy only, shared base");
	run_engine(false, true, XFER_CAP_ZSTD | XFER_CAP_SHARED_BASE);
	engine_postcopy = false;
	test_break();
	test_priority();
	test_requests_during_before_suspend();
	diag("READY before the freeze (about 1.5 s)");
	run_ready(true);
	run_ready(false);
	test_timeout_setting();
	diag("stalled peers (a few seconds)");
	test_stalled_destination();
	test_stalled_source();
	test_unanswered();
	diag("engine: a suspend of 2.5s under 1s timeouts, carried through by keepalives");
	engine_timeouts = true;
	suspend_us = 2500 * 1000;
	run_engine(false, false, XFER_CAP_ZSTD);
	engine_timeouts = false;
	suspend_us = 0;
	return done_testing();
}
