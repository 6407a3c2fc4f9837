/*
 * The migration wire format (docs/protocol.md): the handshake, the fixed
 * frame header, and the message payloads. Decoding never allocates and checks
 * every length against the hard limits below before anything is read; the
 * caller allocates a payload buffer only after xfer_hdr_decode accepted it.
 */
#ifndef DRAFTER_XFER_WIRE_H
#define DRAFTER_XFER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define XFER_MAGIC "DRFTXFER"
#define XFER_MAGIC_LEN 8
#define XFER_VERSION 1

#define XFER_HELLO_LEN 24
#define XFER_HDR_LEN 16

/* Hard limits: anything larger is a protocol error, checked before allocation. */
#define XFER_MAX_BLOCK_SIZE (16u << 20)
#define XFER_MIN_BLOCK_SIZE 512u
#define XFER_MAX_PAYLOAD (XFER_MAX_BLOCK_SIZE + 64u)
#define XFER_MAX_DEVICES 256u
#define XFER_MAX_NAME 255u
#define XFER_MAX_LIST 65536u /* entries per HAVE/DIRTY frame */
#define XFER_MAX_REASON 1024u
#define XFER_MAX_AUTH_DATA 65536u
/* Receive timeouts a KEEPALIVE may announce: 0 (none) or 1 s to 24 h. */
#define XFER_MIN_TIMEOUT_MS 1000u
#define XFER_MAX_TIMEOUT_MS (24u * 3600u * 1000u)

/* Roles and capabilities announced in the hello. */
enum xfer_role { XFER_ROLE_SOURCE = 1, XFER_ROLE_DEST = 2 };
#define XFER_CAP_ZSTD 0x1u        /* can decode zstd block payloads */
#define XFER_CAP_SHARED_BASE 0x2u /* holds the shared bases: HAVE lists welcome */
#define XFER_CAP_READONLY 0x4u    /* source serves read-only devices (registry) */
#define XFER_CAP_KEEPALIVE 0x8u   /* sends KEEPALIVE when idle, and understands it */
/* source: understands READY; destination: sends READY (it starts a VM ahead of the handover) */
#define XFER_CAP_READY 0x10u

enum xfer_type {
	XFER_T_DEVINFO = 1,
	XFER_T_DEVS_DONE = 2,
	XFER_T_HAVE = 3,
	XFER_T_BLOCK = 4,
	XFER_T_REQUEST = 5,
	XFER_T_DIRTY = 6,
	XFER_T_AUTHORITY = 7,
	XFER_T_COMPLETED = 8,
	XFER_T_DONE = 9,
	XFER_T_ABORT = 10,
	XFER_T_ACK = 11,
	XFER_T_KEEPALIVE = 12,
	XFER_T_RESUMED = 13,
	XFER_T_READY = 14,
	XFER_T__MAX,
};

/* Frame flags. */
#define XFER_F_MORE 0x01     /* a list continues in the next frame of the same type */
#define XFER_F_PRIORITY 0x02 /* a block sent because the destination asked for it */
#define XFER_F_ACK 0x80      /* the sender waits for an ACK with this txid */
#define XFER_F_KNOWN (XFER_F_MORE | XFER_F_PRIORITY | XFER_F_ACK)

/* Block payload encodings. */
enum xfer_enc { XFER_ENC_RAW = 0, XFER_ENC_ZERO = 1, XFER_ENC_ZSTD = 2 };
#define XFER_BLOCK_HDR_LEN 20

/* Device flags in DEVINFO. */
#define XFER_DEV_SHARED_BASE 0x1u

/* Abort reasons. */
enum xfer_abort {
	XFER_ABORT_PROTOCOL = 1, /* malformed frame or message */
	XFER_ABORT_VERSION = 2,  /* incompatible protocol version */
	XFER_ABORT_DEVICE = 3,   /* device unknown or does not fit */
	XFER_ABORT_IO = 4,       /* local read/write failure */
	XFER_ABORT_CHECKSUM = 5, /* a block or a device digest did not match */
	XFER_ABORT_CANCELLED = 6,/* operator stopped the migration */
};

struct xfer_hello {
	uint16_t version;
	uint16_t role;
	uint32_t caps;
	uint32_t max_payload;
};

struct xfer_hdr {
	uint32_t len;
	uint8_t type;
	uint8_t flags;
	uint16_t dev;
	uint32_t txid;
};

struct xfer_range {
	uint64_t start;
	uint64_t count;
};

/* A decoded message; pointers refer into the payload buffer. */
struct xfer_msg {
	struct xfer_hdr hdr;
	union {
		struct {
			uint64_t size;
			uint32_t block_size;
			uint32_t flags;
			const char *name; /* not NUL-terminated */
			uint16_t name_len;
		} devinfo;
		struct {
			uint32_t count;
		} devs_done;
		struct {
			uint32_t count;
			const uint8_t *ranges; /* count × {u64 start, u64 count} */
		} have;
		struct {
			uint64_t index;
			uint8_t enc;
			uint32_t raw_len;
			uint32_t crc;
			const uint8_t *data;
			uint32_t data_len;
		} block;
		struct {
			uint64_t index;
			uint32_t count;
		} request;
		struct {
			uint32_t count;
			const uint8_t *blocks; /* count × u64 */
		} dirty;
		struct {
			const uint8_t *data;
			uint32_t len;
		} authority;
		struct {
			uint64_t blocks;
			uint64_t digest;
		} completed;
		struct {
			uint16_t code;
			const char *reason; /* not NUL-terminated */
			uint16_t reason_len;
		} abort;
		struct {
			uint32_t timeout_ms; /* the sender's receive timeout, 0: none */
		} keepalive;
		struct {
			uint64_t realtime_ns; /* when the destination's VM ran again */
		} resumed;
	} u;
};

/* Little-endian helpers. */
static inline void xfer_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void xfer_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void xfer_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t xfer_get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t xfer_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t xfer_get64(const uint8_t *p)
{
	return (uint64_t)xfer_get32(p) | (uint64_t)xfer_get32(p + 4) << 32;
}

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
uint32_t xfer_crc32c(uint32_t crc, const void *buf, size_t len);

/* Order-independent digest of a device from its blocks' CRCs (COMPLETED). */
uint64_t xfer_digest_mix(uint64_t index, uint32_t crc);

void xfer_hello_encode(uint8_t out[XFER_HELLO_LEN], const struct xfer_hello *h);
/* -EPROTO: not a drafter peer; -EPROTONOSUPPORT: other version (H filled). */
int xfer_hello_decode(const uint8_t in[XFER_HELLO_LEN], struct xfer_hello *h);

void xfer_hdr_encode(uint8_t out[XFER_HDR_LEN], const struct xfer_hdr *h);
/* Checks the header checksum, type, flags and the payload limit. -EPROTO/-EMSGSIZE. */
int xfer_hdr_decode(const uint8_t in[XFER_HDR_LEN], struct xfer_hdr *h);

/* Validate a payload against its header and fill M. -EPROTO on any mismatch. */
int xfer_msg_decode(const struct xfer_hdr *h, const uint8_t *payload, size_t len,
		    struct xfer_msg *m);

/*
 * Payload builders: write into OUT (capacity CAP) and return the payload
 * length, or -ENOBUFS.
 */
int xfer_enc_devinfo(uint8_t *out, size_t cap, uint64_t size, uint32_t block_size,
		     uint32_t flags, const char *name);
int xfer_enc_u32(uint8_t *out, size_t cap, uint32_t v);
int xfer_enc_u64(uint8_t *out, size_t cap, uint64_t v);
int xfer_enc_request(uint8_t *out, size_t cap, uint64_t index, uint32_t count);
int xfer_enc_completed(uint8_t *out, size_t cap, uint64_t blocks, uint64_t digest);
int xfer_enc_abort(uint8_t *out, size_t cap, uint16_t code, const char *reason);
/* A list of u64 block numbers (DIRTY) or ranges (HAVE) with its count. */
int xfer_enc_dirty(uint8_t *out, size_t cap, const uint64_t *blocks, uint32_t n);
int xfer_enc_have(uint8_t *out, size_t cap, const struct xfer_range *r, uint32_t n);

/* Per-connection block coder state (a zstd context reused across blocks). */
struct xfer_coder;
struct xfer_coder *xfer_coder_new(void);
void xfer_coder_free(struct xfer_coder *c);
static inline void xfer_coder_freep(struct xfer_coder **c)
{
	xfer_coder_free(*c);
}

/*
 * Encode block INDEX (DATA, LEN bytes) as a BLOCK payload into OUT, which must
 * hold XFER_BLOCK_HDR_LEN + LEN bytes. Picks all-zero, zstd when smaller, or
 * raw. *CRC receives the block's CRC32C. Returns the payload length.
 */
int xfer_block_encode(struct xfer_coder *c, uint64_t index, const void *data, uint32_t len,
		      bool try_compress, uint8_t *out, uint32_t *crc);
/* The same for a block known to be all zero, without its data. */
int xfer_block_encode_zero(uint64_t index, uint32_t len, uint8_t *out, uint32_t *crc);

/*
 * Decode a BLOCK message into OUT (capacity CAP >= raw_len) and verify its
 * CRC: 0, -EPROTO (bad encoding or sizes), -EBADMSG (checksum mismatch).
 */
int xfer_block_decode(struct xfer_coder *c, const struct xfer_msg *m, void *out, size_t cap);

const char *xfer_type_name(uint8_t type);
const char *xfer_abort_name(uint16_t code);

#endif
