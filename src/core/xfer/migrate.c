/*
 * The migration engine. The source sends from one thread and reads the
 * destination's requests and acknowledgements in another; requested blocks
 * go through a queue that the sender drains before every bulk block, which
 * is the priority lane of docs/protocol.md. The destination handles frames
 * strictly in order in the calling thread, so a dirty list always takes
 * effect before the blocks sent after it, and the authority event after the
 * final dirty lists.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/util.h"
#include "core/xfer/migrate.h"

#define BIT_WORDS(n) (((n) + 63) / 64)
static inline bool bit_test(const uint64_t *b, uint64_t i) { return b[i / 64] >> (i % 64) & 1; }
static inline void bit_set(uint64_t *b, uint64_t i) { b[i / 64] |= 1ull << (i % 64); }
static inline void bit_clear(uint64_t *b, uint64_t i) { b[i / 64] &= ~(1ull << (i % 64)); }

/* Compression is retried after this many blocks once a block did not shrink. */
#define COMPRESS_BACKOFF_MAX 64u
/* Compression is decided anew every this many blocks sent ... */
#define MODE_WINDOW_BLOCKS 64u
/* ... and every this many windows the other choice is tried again. */
#define MODE_PROBE_EVERY 8u
/* The longest a source waits for a destination's READY before its freeze. */
#define READY_WAIT_MAX_NS (10ull * 1000000000ull)

/* ------------------------------------------------------------------ source */

struct src_dev {
	struct xfer_dev *d;
	uint16_t id;
	uint64_t nblocks;
	uint64_t *sent;    /* sent (or held by the destination) during the full pass */
	uint64_t *pending; /* post-copy: final dirty blocks still to send */
	uint64_t *queued;  /* in the priority queue */
	uint64_t *has_crc;
	uint32_t *crcs;
	uint64_t digest, ncrc;
	uint64_t cursor;
	uint32_t skip_compress, backoff;
	uint32_t cycles, below;
	bool ready, pass_done;
};

struct pq_item {
	uint16_t dev;
	uint64_t block;
};

struct src {
	struct xfer_conn *c;
	struct src_dev *devs;
	size_t n;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pq_item *pq;
	size_t pq_head, pq_len, pq_cap, pq_max;
	uint32_t acked;
	bool dest_ready; /* READY came */
	int failed;
	char err[256];
	uint32_t txid;
	uint8_t *frame;
	uint8_t *buf;
	struct xfer_coder *coder;
	/* compress or not: see src_compress() */
	uint64_t window_ns;       /* start of the current window */
	uint64_t window_bytes;    /* bytes of data blocks (not zero) sent in it */
	uint64_t window_all;      /* bytes of all blocks sent in it */
	uint32_t window_blocks, windows;
	bool zstd;                /* the current window's choice */
	double rate[2];           /* data bytes per ns, raw [0] and zstd [1]; 0: unknown */
	struct xfer_stats *st;
	const struct xfer_hooks *h;
	uint64_t total_bytes, done_bytes, last_progress;
	bool frozen;     /* suspended: what is sent from now on is final */
	bool *authority_sent; /* the caller's: AUTHORITY sent */
};

static void src_fail(struct src *s, int r, const char *fmt, ...) _printf_(3, 4);
static void src_fail(struct src *s, int r, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	if (!s->failed) {
		s->failed = r < 0 ? r : -EIO;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static int src_failed(struct src *s)
{
	int r;

	pthread_mutex_lock(&s->lock);
	r = s->failed;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* False when the queue is full: the block is then not marked queued, so a
 * later request for it (the destination asks again while it waits) counts. */
static bool pq_push_locked(struct src *s, uint16_t dev, uint64_t block)
{
	if (s->pq_len >= s->pq_max)
		return false;
	if (s->pq_len == s->pq_cap) {
		size_t ncap = s->pq_cap ? s->pq_cap * 2 : 64;
		struct pq_item *np = xreallocarray(NULL, ncap, sizeof(*np));
		for (size_t i = 0; i < s->pq_len; i++)
			np[i] = s->pq[(s->pq_head + i) % s->pq_cap];
		free(s->pq);
		s->pq = np;
		s->pq_cap = ncap;
		s->pq_head = 0;
	}
	s->pq[(s->pq_head + s->pq_len) % s->pq_cap] = (struct pq_item){ dev, block };
	s->pq_len++;
	return true;
}

static void *src_reader(void *arg)
{
	struct src *s = arg;
	_cleanup_free_ uint8_t *buf = NULL;
	size_t cap = 0;
	struct xfer_msg m;

	thread_name("xfer-reader");
	for (;;) {
		int r = xfer_recv(s->c, &buf, &cap, &m);
		if (r == 1) {
			src_fail(s, -ECONNRESET, "destination closed the connection");
			break;
		}
		if (r < 0) {
			src_fail(s, r, "%s", s->c->err[0] ? s->c->err : strerror(-r));
			break;
		}
		if (m.hdr.type == XFER_T_ABORT) {
			src_fail(s, -ECONNABORTED, "destination aborted: %.*s",
				 (int)m.u.abort.reason_len, m.u.abort.reason);
			break;
		}
		if (m.hdr.type == XFER_T_RESUMED) {
			pthread_mutex_lock(&s->lock);
			s->st->dest_resumed_ns = m.u.resumed.realtime_ns;
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (m.hdr.type == XFER_T_READY) {
			pthread_mutex_lock(&s->lock);
			s->dest_ready = true;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (m.hdr.type == XFER_T_ACK) {
			pthread_mutex_lock(&s->lock);
			if (m.hdr.txid > s->acked)
				s->acked = m.hdr.txid;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (m.hdr.type != XFER_T_REQUEST || m.hdr.dev > s->n) {
			src_fail(s, -EPROTO, "unexpected %s message from the destination",
				 xfer_type_name(m.hdr.type));
			break;
		}
		struct src_dev *sd = &s->devs[m.hdr.dev - 1];
		if (m.u.request.index >= sd->nblocks ||
		    m.u.request.count > sd->nblocks - m.u.request.index) {
			src_fail(s, -EPROTO, "destination asked for blocks beyond device '%s'",
				 sd->d->name);
			break;
		}
		pthread_mutex_lock(&s->lock);
		for (uint64_t b = m.u.request.index; b < m.u.request.index + m.u.request.count; b++) {
			if (!bit_test(sd->queued, b) && pq_push_locked(s, sd->id, b))
				bit_set(sd->queued, b);
		}
		s->st->requests += m.u.request.count;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static uint32_t src_next_txid(struct src *s)
{
	return ++s->txid;
}

/* When an answer awaited from now on is overdue (the receive timeout); 0: never. */
static uint64_t src_deadline(struct src *s)
{
	return s->c->timeout_ms > 0 ? now_ns() + (uint64_t)s->c->timeout_ms * 1000000ull : 0;
}

/* Wait on s->cond with s->lock held; false once DEADLINE (monotonic, 0: none) has passed. */
static bool src_wait_until(struct src *s, uint64_t deadline)
{
	if (!deadline) {
		pthread_cond_wait(&s->cond, &s->lock);
		return true;
	}
	if (now_ns() >= deadline)
		return false;
	struct timespec ts = { .tv_sec = (time_t)(deadline / 1000000000ull),
			       .tv_nsec = (long)(deadline % 1000000000ull) };
	(void)pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	return true;
}

/* The destination still sends keepalives but its session does not answer. */
static int src_fail_unanswered(struct src *s)
{
	char d[32];

	format_duration((uint64_t)s->c->timeout_ms * 1000000ull, d, sizeof(d));
	src_fail(s, -ETIMEDOUT, "no acknowledgement for %s: the peer stopped answering", d);
	return -ETIMEDOUT;
}

static int src_wait_ack(struct src *s, uint32_t txid)
{
	uint64_t deadline = src_deadline(s);
	bool late;
	int r;

	pthread_mutex_lock(&s->lock);
	while (s->acked < txid && !s->failed && src_wait_until(s, deadline))
		;
	late = s->acked < txid && !s->failed;
	r = s->failed;
	pthread_mutex_unlock(&s->lock);
	return late ? src_fail_unanswered(s) : r;
}

static void src_progress(struct src *s, uint64_t bytes)
{
	s->done_bytes += bytes;
	if (s->h && s->h->progress) {
		uint64_t now = now_ns();
		if (now - s->last_progress > 100000000ull || s->done_bytes >= s->total_bytes) {
			s->last_progress = now;
			s->h->progress(s->h->ctx, s->done_bytes, s->total_bytes);
		}
	}
}

/*
 * Whether to compress: whichever of raw and zstd moved data blocks faster
 * lately, measured end to end in windows of MODE_WINDOW_BLOCKS blocks (the
 * time per window includes waiting for the socket, so a slow link, TLS or
 * a slow receiver count too), trying the other choice every
 * MODE_PROBE_EVERY windows. Mostly-zero windows say nothing and are not
 * counted. Over loopback with a busy guest raw wins (zstd was 60 % of the
 * sending thread); over a slow link or TLS compression wins.
 */
static bool src_compress(struct src *s)
{
	if (s->window_ns && ++s->window_blocks < MODE_WINDOW_BLOCKS)
		return s->zstd;
	uint64_t now = now_ns();
	/* a window of at least a quarter data counts, whatever the block size */
	if (s->window_ns && s->window_bytes && 4 * s->window_bytes >= s->window_all && now > s->window_ns) {
		double r = (double)s->window_bytes / (double)(now - s->window_ns);
		double *e = &s->rate[s->zstd];
		*e = *e > 0 ? (*e + r) / 2 : r;
	}
	s->windows++;
	if (s->rate[0] == 0 || s->rate[1] == 0)
		s->zstd = s->rate[0] != 0; /* raw first, then zstd */
	else
		s->zstd = (s->rate[1] > s->rate[0]) != (s->windows % MODE_PROBE_EVERY == 0);
	s->window_ns = now;
	s->window_bytes = 0;
	s->window_all = 0;
	s->window_blocks = 0;
	return s->zstd;
}

static int src_send_block(struct src *s, struct src_dev *sd, uint64_t block, bool prio)
{
	uint32_t len = xfer_dev_block_len(sd->d, block), crc;
	ssize_t got;
	bool compress = src_compress(s);
	bool try_zstd = compress && sd->skip_compress == 0;
	int n, r;

	/* a hole goes as zeros without being read (a memset in the kernel, then a scan) */
	if (sd->d->ops->zero_block && sd->d->ops->zero_block(sd->d, block) == 1) {
		n = xfer_block_encode_zero(block, len, s->frame, &crc);
	} else {
		got = sd->d->ops->read_block(sd->d, block, s->buf);
		if (got < 0) {
			src_fail(s, (int)got, "cannot read block %" PRIu64 " of device '%s': %s",
				 block, sd->d->name, strerror((int)-got));
			return (int)got;
		}
		if ((uint64_t)got < len)
			memset(s->buf + got, 0, len - (size_t)got);
		n = xfer_block_encode(s->coder, block, s->buf, len, try_zstd, s->frame, &crc);
	}
	uint8_t enc = s->frame[8];
	if (enc == XFER_ENC_ZSTD) {
		sd->backoff = 0;
		s->st->blocks_zstd++;
	} else if (enc == XFER_ENC_RAW) {
		if (try_zstd) {
			/* Incompressible data tends to come in runs: back off. */
			sd->backoff = sd->backoff ? sd->backoff * 2 : 1;
			if (sd->backoff > COMPRESS_BACKOFF_MAX)
				sd->backoff = COMPRESS_BACKOFF_MAX;
			sd->skip_compress = sd->backoff;
		} else if (compress) {
			sd->skip_compress--;
		}
		s->st->blocks_raw++;
	} else {
		s->st->blocks_zero++;
	}
	s->window_all += len;
	if (enc != XFER_ENC_ZERO)
		s->window_bytes += len;
	if (prio)
		s->st->blocks_priority++;
	if (*s->authority_sent)
		s->st->blocks_postcopy++;
	r = xfer_send(s->c, XFER_T_BLOCK, prio ? XFER_F_PRIORITY : 0, sd->id, 0, s->frame, (size_t)n);
	if (r < 0) {
		src_fail(s, r, "%s", s->c->err[0] ? s->c->err : strerror(-r));
		return r;
	}
	if (bit_test(sd->has_crc, block))
		sd->digest -= xfer_digest_mix(block, sd->crcs[block]);
	else
		sd->ncrc++;
	bit_set(sd->has_crc, block);
	sd->crcs[block] = crc;
	sd->digest += xfer_digest_mix(block, crc);
	s->st->bytes_data += len;
	src_progress(s, len);
	return 0;
}

/* Send every queued priority block; 0 or the failure. */
static int src_serve_priority(struct src *s)
{
	for (;;) {
		struct pq_item it;

		pthread_mutex_lock(&s->lock);
		if (s->failed || s->pq_len == 0) {
			int r = s->failed;
			pthread_mutex_unlock(&s->lock);
			return r;
		}
		it = s->pq[s->pq_head];
		s->pq_head = (s->pq_head + 1) % s->pq_cap;
		s->pq_len--;
		struct src_dev *sd = &s->devs[it.dev - 1];
		bit_clear(sd->queued, it.block);
		pthread_mutex_unlock(&s->lock);

		/*
		 * After AUTHORITY nothing changes here: a block already sent and
		 * not in a final dirty list is at the destination or on its way
		 * (the request crossed it), and sending it again only delays the
		 * blocks still missing.
		 */
		if (*s->authority_sent && bit_test(sd->sent, it.block) && !bit_test(sd->pending, it.block))
			continue;
		int r = src_send_block(s, sd, it.block, true);
		if (r < 0)
			return r;
		bit_set(sd->sent, it.block);
		bit_clear(sd->pending, it.block);
	}
}

struct hook_run {
	struct src *s;
	int (*fn)(void *ctx);
	int r;
	bool done;
};

static void *hook_thread(void *arg)
{
	struct hook_run *h = arg;
	int r;

	thread_name("xfer-hook");
	r = h->fn(h->s->h->ctx);
	pthread_mutex_lock(&h->s->lock);
	h->r = r;
	h->done = true;
	pthread_cond_broadcast(&h->s->cond);
	pthread_mutex_unlock(&h->s->lock);
	return NULL;
}

/*
 * Run FN, a hook that waits for someone else (BeforeSuspend waits for the
 * guest), in a thread of its own and serve the destination's requests
 * meanwhile: a destination's VMM starting ahead of the handover reads its
 * kernel then, instead of after AUTHORITY.
 */
static int src_hook_serving(struct src *s, int (*fn)(void *ctx))
{
	struct hook_run h = { .s = s, .fn = fn };
	pthread_t t;
	int r = 0;

	if (pthread_create(&t, NULL, hook_thread, &h) != 0)
		return fn(s->h->ctx);
	for (;;) {
		r = src_serve_priority(s);
		pthread_mutex_lock(&s->lock);
		if (r == 0 && !h.done && !s->pq_len && !s->failed)
			pthread_cond_wait(&s->cond, &s->lock);
		bool done = h.done;
		pthread_mutex_unlock(&s->lock);
		if (r < 0 || done)
			break;
	}
	pthread_join(t, NULL);
	return r < 0 ? r : h.r;
}

/*
 * Wait until END (monotonic) or until *DONE (under s->lock; NULL: never),
 * serving priority requests meanwhile.
 */
static int src_wait_serving(struct src *s, uint64_t end, const bool *done)
{
	for (;;) {
		int r = src_serve_priority(s);
		if (r < 0)
			return r;
		pthread_mutex_lock(&s->lock);
		bool more = s->failed ||
			    (!(done && *done) && (s->pq_len ? now_ns() < end : src_wait_until(s, end)));
		pthread_mutex_unlock(&s->lock);
		if (!more)
			return 0;
	}
}

/* Wait up to NS, serving priority requests meanwhile. */
static int src_throttle(struct src *s, uint64_t ns)
{
	return src_wait_serving(s, now_ns() + ns, NULL);
}

/*
 * Before the freeze: a destination that starts its VM ahead of the
 * handover (XFER_CAP_READY) says READY once its VMM waits for the state,
 * so that the pause covers the cut-over and not that start (with
 * --postcopy the freeze came right after the devices were announced, and
 * the pause held the VMM's whole start: 25-57 ms in bench/migrate). The
 * destination's requests are served meanwhile: the starting VMM reads its
 * kernel. The wait is bounded (READY_WAIT_MAX_NS, or the receive timeout
 * when shorter); past it the freeze goes ahead. Returns how long it
 * waited, or the failure.
 */
static int64_t src_wait_ready(struct src *s)
{
	uint64_t start = now_ns(), end = start + READY_WAIT_MAX_NS, deadline = src_deadline(s);

	if (!(s->c->hello.caps & XFER_CAP_READY))
		return 0;
	if (deadline && deadline < end)
		end = deadline;
	int r = src_wait_serving(s, end, &s->dest_ready);
	return r < 0 ? r : (int64_t)(now_ns() - start);
}

static int src_send_list(struct src *s, struct src_dev *sd, const uint64_t *blocks, size_t n,
			 uint32_t *txid)
{
	size_t off = 0;

	do {
		uint32_t chunk = (uint32_t)(n - off > XFER_MAX_LIST ? XFER_MAX_LIST : n - off);
		bool last = off + chunk == n;
		int len = xfer_enc_dirty(s->frame, XFER_MAX_PAYLOAD, blocks + off, chunk);
		if (len < 0)
			return len;
		*txid = src_next_txid(s);
		int r = xfer_send(s->c, XFER_T_DIRTY, last ? XFER_F_ACK : XFER_F_MORE, sd->id, *txid,
				  s->frame, (size_t)len);
		if (r < 0) {
			src_fail(s, r, "%s", s->c->err[0] ? s->c->err : strerror(-r));
			return r;
		}
		off += chunk;
	} while (off < n);
	return 0;
}

static int src_send_have(struct src *s, struct src_dev *sd)
{
	_cleanup_free_ struct xfer_range *rs = NULL;
	size_t n = 0, off = 0;
	int r;

	r = sd->d->ops->have(sd->d, &rs, &n);
	if (r < 0) {
		src_fail(s, r, "cannot list the shared blocks of device '%s': %s", sd->d->name,
			 strerror(-r));
		return r;
	}
	for (size_t i = 0; i < n; i++) {
		if (rs[i].start >= sd->nblocks || rs[i].count > sd->nblocks - rs[i].start)
			return -EINVAL;
		for (uint64_t b = rs[i].start; b < rs[i].start + rs[i].count; b++)
			bit_set(sd->sent, b);
		s->st->blocks_have += rs[i].count;
		s->done_bytes += rs[i].count * sd->d->block_size;
	}
	while (off < n) {
		uint32_t chunk = (uint32_t)(n - off > XFER_MAX_LIST ? XFER_MAX_LIST : n - off);
		int len = xfer_enc_have(s->frame, XFER_MAX_PAYLOAD, rs + off, chunk);
		if (len < 0)
			return len;
		r = xfer_send(s->c, XFER_T_HAVE, off + chunk < n ? XFER_F_MORE : 0, sd->id, 0, s->frame,
			      (size_t)len);
		if (r < 0) {
			src_fail(s, r, "%s", s->c->err[0] ? s->c->err : strerror(-r));
			return r;
		}
		off += chunk;
	}
	return 0;
}

/* Next block of the full pass for SD, or -ENOENT. */
static int src_next(struct src_dev *sd, uint64_t *block)
{
	if (sd->pass_done)
		return -ENOENT;
	for (;;) {
		uint64_t b;
		if (sd->d->ops->next_block) {
			int r = sd->d->ops->next_block(sd->d, &b);
			if (r < 0) {
				sd->pass_done = true;
				return r == -ENOENT ? -ENOENT : r;
			}
			if (b >= sd->nblocks)
				continue;
		} else {
			if (sd->cursor >= sd->nblocks) {
				sd->pass_done = true;
				return -ENOENT;
			}
			b = sd->cursor++;
		}
		if (!bit_test(sd->sent, b)) {
			*block = b;
			return 0;
		}
	}
}

static int src_full_pass(struct src *s)
{
	bool any = true;

	while (any) {
		any = false;
		for (size_t i = 0; i < s->n; i++) {
			struct src_dev *sd = &s->devs[i];
			/* Devices go in step: a few blocks each, in turn. */
			for (int k = 0; k < 16; k++) {
				uint64_t b;
				int r = src_serve_priority(s);
				if (r < 0)
					return r;
				r = src_next(sd, &b);
				if (r == -ENOENT)
					break;
				if (r < 0) {
					src_fail(s, r, "cannot order the blocks of device '%s'", sd->d->name);
					return r;
				}
				any = true;
				/* after the suspend a block sent once is final */
				if (s->frozen && bit_test(sd->sent, b))
					continue;
				r = src_send_block(s, sd, b, false);
				if (r < 0)
					return r;
				bit_set(sd->sent, b);
				if (s->frozen)
					bit_clear(sd->pending, b);
			}
		}
	}
	return src_serve_priority(s);
}

static int src_sync(struct src *s, struct src_dev *sd, uint64_t **list, size_t *n)
{
	*list = NULL;
	*n = 0;
	if (!sd->d->ops->sync_dirty)
		return 0;
	int r = sd->d->ops->sync_dirty(sd->d, list, n);
	if (r < 0)
		src_fail(s, r, "cannot collect the dirty blocks of device '%s': %s", sd->d->name,
			 strerror(-r));
	return r;
}

/* Whether the device takes part in dirty cycles (it can list what changed, and may). */
static bool src_takes_cycles(const struct src_dev *sd)
{
	return sd->d->ops->sync_dirty && sd->d->max_cycles;
}

/* List what changed in the device since the last list and send the list. */
static int src_list(struct src *s, struct src_dev *sd, uint64_t **list, size_t *n, uint32_t *txid)
{
	int r = src_sync(s, sd, list, n);

	return r < 0 ? r : src_send_list(s, sd, *list, *n, txid);
}

static int src_flush(struct src *s)
{
	int r = 0;

	if (s->h && s->h->flush && (r = s->h->flush(s->h->ctx)) < 0)
		src_fail(s, r, "cannot flush the devices before a dirty cycle: %s", strerror(-r));
	return r;
}

/* One dirty cycle of a device: list what changed since, have it acknowledged, send it. */
static int src_cycle(struct src *s, struct src_dev *sd, size_t *count)
{
	_cleanup_free_ uint64_t *list = NULL;
	size_t n;
	uint32_t txid;
	int r;

	r = src_list(s, sd, &list, &n, &txid);
	if (r < 0)
		return r;
	r = src_wait_ack(s, txid);
	if (r < 0)
		return r;
	for (size_t k = 0; k < n; k++) {
		if (list[k] >= sd->nblocks)
			continue;
		r = src_serve_priority(s);
		if (r < 0)
			return r;
		r = src_send_block(s, sd, list[k], false);
		if (r < 0)
			return r;
	}
	*count = n;
	return 0;
}

static int src_dirty_cycles(struct src *s)
{
	bool any_cycles = false;

	for (size_t i = 0; i < s->n; i++) {
		struct src_dev *sd = &s->devs[i];
		sd->ready = !src_takes_cycles(sd);
		any_cycles |= !sd->ready;
	}
	while (any_cycles) {
		uint64_t throttle = 0;
		bool all_ready = true;
		int r;

		r = src_flush(s);
		if (r < 0)
			return r;
		for (size_t i = 0; i < s->n; i++) {
			struct src_dev *sd = &s->devs[i];
			size_t n;

			if (!src_takes_cycles(sd))
				continue;
			r = src_cycle(s, sd, &n);
			if (r < 0)
				return r;
			sd->cycles++;
			if (n <= sd->d->max_dirty_blocks)
				sd->below++;
			else
				sd->below = 0;
			/* Ready: enough cycles with few dirty blocks, or out of cycles. */
			if ((sd->cycles >= sd->d->min_cycles && n <= sd->d->max_dirty_blocks) ||
			    sd->cycles >= sd->d->max_cycles)
				sd->ready = true;
			if (!sd->ready)
				all_ready = false;
			if (sd->d->cycle_throttle_ns > throttle)
				throttle = sd->d->cycle_throttle_ns;
		}
		s->st->cycles++;
		if (all_ready)
			break;
		r = src_throttle(s, throttle);
		if (r < 0)
			return r;
	}
	return 0;
}

static int src_setup(struct src *s, struct xfer_dev **devs, size_t n)
{
	uint32_t maxbs = 0;

	s->devs = xcalloc(n, sizeof(*s->devs));
	s->n = n;
	for (size_t i = 0; i < n; i++) {
		struct src_dev *sd = &s->devs[i];
		sd->d = devs[i];
		sd->id = (uint16_t)(i + 1);
		sd->nblocks = xfer_dev_blocks(devs[i]);
		if (sd->nblocks > XFER_MAX_BLOCKS)
			return -EFBIG;
		size_t w = BIT_WORDS(sd->nblocks) ? BIT_WORDS(sd->nblocks) : 1;
		sd->sent = xcalloc(w, 8);
		sd->pending = xcalloc(w, 8);
		sd->queued = xcalloc(w, 8);
		sd->has_crc = xcalloc(w, 8);
		sd->crcs = xcalloc(sd->nblocks ? sd->nblocks : 1, 4);
		if (devs[i]->block_size > maxbs)
			maxbs = devs[i]->block_size;
		s->total_bytes += devs[i]->size;
	}
	s->buf = malloc(maxbs ? maxbs : 1);
	s->frame = malloc(XFER_MAX_PAYLOAD);
	s->coder = xfer_coder_new();
	if (!s->buf || !s->frame || !s->coder)
		return -ENOMEM;
	return 0;
}

static void src_cleanup(struct src *s)
{
	for (size_t i = 0; s->devs && i < s->n; i++) {
		free(s->devs[i].sent);
		free(s->devs[i].pending);
		free(s->devs[i].queued);
		free(s->devs[i].has_crc);
		free(s->devs[i].crcs);
	}
	free(s->devs);
	free(s->pq);
	free(s->buf);
	free(s->frame);
	xfer_coder_free(s->coder);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
}

/* Post-copy of one pending block (unless a request took it meanwhile). */
static int src_post_block(struct src *s, struct src_dev *sd, uint64_t b)
{
	int r = src_serve_priority(s);

	if (r < 0 || !bit_test(sd->pending, b))
		return r;
	r = src_send_block(s, sd, b, false);
	if (r < 0)
		return r;
	bit_set(sd->sent, b);
	bit_clear(sd->pending, b);
	return 0;
}

struct first_ctx {
	struct src *s;
	int r;
};

/* The hooks' "first" ranges: their pending blocks now. */
static void src_first_range(void *arg, const char *name, uint64_t off, uint64_t len)
{
	struct first_ctx *f = arg;

	for (size_t i = 0; i < f->s->n && f->r == 0; i++) {
		struct src_dev *sd = &f->s->devs[i];
		uint64_t size = sd->d->size, bs = sd->d->block_size;
		if (strcmp(sd->d->name, name) != 0 || !len || off >= size)
			continue;
		uint64_t last = (len > size - off ? size - 1 : off + len - 1) / bs;
		for (uint64_t b = off / bs; b <= last && f->r == 0; b++)
			if (bit_test(sd->pending, b))
				f->r = src_post_block(f->s, sd, b);
	}
}

/* The pending blocks of the ranges the hooks name (what the destination reads first). */
static int src_send_first(struct src *s)
{
	struct first_ctx f = { .s = s };

	if (s->frozen && s->h && s->h->first)
		s->h->first(s->h->ctx, src_first_range, &f);
	return f.r;
}

/*
 * 4. BeforeSuspend and, when blocks went out already, one closing cycle of
 * what the VM wrote meanwhile and a flush (it still runs: this is not
 * downtime); then suspend, and the final dirty lists, acknowledged: the
 * devices no longer change.
 */
static int src_freeze(struct src *s)
{
	uint32_t last = 0;
	int64_t waited = src_wait_ready(s);
	int r;

	if (waited < 0)
		return (int)waited;
	s->st->ready_wait_ns = (uint64_t)waited;
	if (s->h && s->h->before_suspend) {
		if ((r = src_hook_serving(s, s->h->before_suspend)) < 0)
			return src_fail(s, r, "cannot suspend: %s", strerror(-r)), r;
		if (s->st->cycles) {
			r = src_flush(s);
			for (size_t i = 0; r == 0 && i < s->n; i++) {
				struct src_dev *sd = &s->devs[i];
				size_t n;
				if (src_takes_cycles(sd))
					r = src_cycle(s, sd, &n);
			}
			/* and what came meanwhile is written back before the pause, not in it */
			if (r == 0)
				r = src_flush(s);
			if (r < 0)
				return r;
		}
	}
	if (s->h && s->h->suspend && (r = s->h->suspend(s->h->ctx)) < 0)
		return src_fail(s, r, "cannot suspend: %s", strerror(-r)), r;
	s->st->suspend_ns = now_ns();
	for (size_t i = 0; i < s->n; i++) {
		struct src_dev *sd = &s->devs[i];
		_cleanup_free_ uint64_t *list = NULL;
		size_t n;
		r = src_list(s, sd, &list, &n, &last);
		if (r < 0)
			return r;
		for (size_t k = 0; k < n; k++)
			if (list[k] < sd->nblocks)
				bit_set(sd->pending, list[k]);
		s->st->final_dirty += n;
	}
	s->frozen = true;
	/*
	 * What the destination reads first once it has authority (its VM's
	 * record and state) goes now, while the lists' acknowledgement travels.
	 */
	if ((r = src_send_first(s)) < 0)
		return r;
	return src_wait_ack(s, last);
}

/* 5. authority: from here on the destination owns the devices. */
static int src_authority(struct src *s)
{
	uint8_t adata[XFER_MAX_AUTH_DATA];
	int alen = 0, r;
	uint32_t txid;

	if (s->h && s->h->authority_data) {
		alen = s->h->authority_data(s->h->ctx, adata, sizeof(adata));
		if (alen < 0)
			return src_fail(s, alen, "cannot prepare the handover: %s", strerror(-alen)), alen;
	}
	txid = src_next_txid(s);
	r = xfer_send(s->c, XFER_T_AUTHORITY, XFER_F_ACK, 0, txid, adata, (size_t)alen);
	if (r < 0)
		return src_fail(s, r, "%s", s->c->err), r;
	/* Once sent, the event may have arrived: never run again here. */
	*s->authority_sent = true;
	s->st->authority_ns = now_ns();
	if (s->h && s->h->handover)
		(void)s->h->handover(s->h->ctx);
	/*
	 * No waiting for the acknowledgement: nothing here depends on it any
	 * more, and the destination is about to load its VM from the blocks
	 * that follow. The acknowledgement of DONE covers this one.
	 */
	return 0;
}

static uint64_t bits_count(const uint64_t *bits, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < BIT_WORDS(n); w++)
		c += (uint64_t)__builtin_popcountll(bits[w]);
	return c;
}

/*
 * One device's pending blocks: those its VMM read first, in that order (when
 * the device keeps it), then the rest in ascending order.
 */
static int src_post_device(struct src *s, struct src_dev *sd)
{
	_cleanup_free_ uint64_t *first = NULL;
	size_t nfirst = 0;
	int r = 0;

	if (s->frozen && sd->d->ops->read_order && sd->d->ops->read_order(sd->d, &first, &nfirst) < 0)
		nfirst = 0; /* only an ordering hint is lost */
	for (size_t i = 0; r == 0 && i < nfirst; i++)
		if (first[i] < sd->nblocks && bit_test(sd->pending, first[i]))
			r = src_post_block(s, sd, first[i]);
	for (uint64_t b = 0; r == 0 && b < sd->nblocks; b++)
		if (bit_test(sd->pending, b))
			r = src_post_block(s, sd, b);
	return r;
}

/*
 * Post-copy: the final dirty blocks not sent yet, requested ones first,
 * then the ranges the hooks name (what the destination reads before it can
 * resume its VM; usually gone before the authority already). Then devices
 * with the fewest go first: the VM's state and snapshot record ahead of its
 * memory.
 */
static int src_post_copy(struct src *s)
{
	size_t order[XFER_MAX_DEVICES];
	uint64_t count[XFER_MAX_DEVICES];
	int r = src_send_first(s);

	for (size_t i = 0; i < s->n; i++) {
		size_t j = i;
		count[i] = bits_count(s->devs[i].pending, s->devs[i].nblocks);
		while (j > 0 && count[order[j - 1]] > count[i]) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	for (size_t k = 0; r == 0 && k < s->n; k++)
		if (count[order[k]])
			r = src_post_device(s, &s->devs[order[k]]);
	return r < 0 ? r : src_serve_priority(s);
}

static void src_working_set_first(struct src *s)
{
	for (size_t i = 0; i < s->n; i++) {
		struct xfer_dev *d = s->devs[i].d;
		int r;

		if (d->ops->working_set_first && (r = d->ops->working_set_first(d)) < 0)
			log_debug("device '%s' goes in its plain order: %s", d->name, strerror(-r));
	}
}

static int src_run(struct src *s, const struct xfer_source_opts *o)
{
	uint8_t small[4 + XFER_MAX_NAME + 64];
	int r, len;
	uint32_t txid;

	/* 1. the devices, and what a destination with the shared base holds */
	for (size_t i = 0; i < s->n; i++) {
		struct xfer_dev *d = s->devs[i].d;
		len = xfer_enc_devinfo(small, sizeof(small), d->size, d->block_size, d->flags, d->name);
		if (len < 0)
			return src_fail(s, len, "bad device name '%s'", d->name), len;
		r = xfer_send(s->c, XFER_T_DEVINFO, 0, s->devs[i].id, 0, small, (size_t)len);
		if (r < 0)
			return src_fail(s, r, "%s", s->c->err), r;
	}
	len = xfer_enc_u32(small, sizeof(small), (uint32_t)s->n);
	r = xfer_send(s->c, XFER_T_DEVS_DONE, 0, 0, 0, small, (size_t)len);
	if (r < 0)
		return src_fail(s, r, "%s", s->c->err), r;
	for (size_t i = 0; i < s->n; i++) {
		struct src_dev *sd = &s->devs[i];
		if ((sd->d->flags & XFER_DEV_SHARED_BASE) && sd->d->ops->have &&
		    (s->c->hello.caps & XFER_CAP_SHARED_BASE)) {
			r = src_send_have(s, sd);
			if (r < 0)
				return r;
		}
	}

	/* A read-only source hands authority over at once: nothing will change. */
	if (o && o->read_only) {
		txid = src_next_txid(s);
		r = xfer_send(s->c, XFER_T_AUTHORITY, XFER_F_ACK, 0, txid, NULL, 0);
		if (r < 0)
			return src_fail(s, r, "%s", s->c->err), r;
		*s->authority_sent = true;
		s->st->authority_ns = now_ns();
	} else if (o && o->postcopy) {
		/*
		 * Post-copy only: hand over before any block, the full pass
		 * follows. A flush while the VM still runs leaves less for the
		 * one in the suspend, which is downtime. It takes a while (the
		 * guest's memory written back): the destination's requests,
		 * its VMM starting ahead, are served meanwhile.
		 */
		if (s->h && s->h->flush && (r = src_hook_serving(s, s->h->flush)) < 0)
			return src_fail(s, r, "cannot flush the devices: %s", strerror(-r)), r;
		r = src_freeze(s);
		if (r == 0)
			r = src_authority(s);
		/*
		 * What the VM wrote lately (the final dirty lists) is what it
		 * will most likely touch first: it goes before the full pass.
		 */
		if (r == 0)
			r = src_post_copy(s);
		if (r < 0)
			return r;
	}
	/*
	 * The full pass starts with what the VMM read here, first read first:
	 * resumed on the destination, the VM reads much the same in much the
	 * same order. Post-copy: the pass is ahead of most of its requests.
	 * Pre-copy: a destination copies the blocks that arrive into its page
	 * cache, first arrivals in arrival order, as far as its copier gets
	 * before the VM resumes there.
	 */
	src_working_set_first(s);

	/* 2. full pass */
	r = src_full_pass(s);
	if (r < 0)
		return r;

	if (!*s->authority_sent) {
		/* 3. dirty cycles, 4. suspend, 5. authority */
		r = src_dirty_cycles(s);
		if (r < 0)
			return r;
		r = src_freeze(s);
		if (r < 0)
			return r;
		r = src_authority(s);
		if (r < 0)
			return r;
	}

	r = src_post_copy(s);
	if (r < 0)
		return r;
	r = src_serve_priority(s);
	if (r < 0)
		return r;

	/* 6. completed per device, then done */
	for (size_t i = 0; i < s->n; i++) {
		struct src_dev *sd = &s->devs[i];
		len = xfer_enc_completed(small, sizeof(small), sd->ncrc, sd->digest);
		r = xfer_send(s->c, XFER_T_COMPLETED, 0, sd->id, 0, small, (size_t)len);
		if (r < 0)
			return src_fail(s, r, "%s", s->c->err), r;
	}
	txid = src_next_txid(s);
	r = xfer_send(s->c, XFER_T_DONE, XFER_F_ACK, 0, txid, NULL, 0);
	if (r < 0)
		return src_fail(s, r, "%s", s->c->err), r;
	/* Requests may still come until the destination has everything. */
	uint64_t deadline = src_deadline(s);
	for (;;) {
		bool in_time = true;
		r = src_serve_priority(s);
		if (r < 0) {
			/* A destination that acknowledged and then closed at once is done, not failed. */
			pthread_mutex_lock(&s->lock);
			bool acked = s->acked >= txid;
			pthread_mutex_unlock(&s->lock);
			return acked ? 0 : r;
		}
		pthread_mutex_lock(&s->lock);
		while (s->acked < txid && !s->failed && s->pq_len == 0 && in_time)
			in_time = src_wait_until(s, deadline);
		bool done = s->acked >= txid;
		pthread_mutex_unlock(&s->lock);
		if (done)
			return 0;
		if (!in_time)
			return src_fail_unanswered(s);
	}
}

int xfer_source_run(struct xfer_conn *c, struct xfer_dev **devs, size_t n,
		    const struct xfer_source_opts *o, const struct xfer_hooks *h,
		    struct xfer_stats *st, bool *authority_sent, char *err, size_t errlen)
{
	struct src s = { .c = c, .h = h, .authority_sent = authority_sent };
	struct xfer_stats dummy = { 0 };
	pthread_t reader;
	int r;

	*authority_sent = false;
	s.st = st ? st : &dummy;
	s.st->start_ns = now_ns();
	s.pq_max = o && o->concurrency ? o->concurrency : 4096;
	pthread_mutex_init(&s.lock, NULL);
	/* Timed waits (throttle, acknowledgements) use monotonic deadlines. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (n == 0 || n > XFER_MAX_DEVICES) {
		snprintf(err, errlen, "cannot migrate %zu devices (1 to %u)", n, XFER_MAX_DEVICES);
		src_cleanup(&s);
		return -EINVAL;
	}
	r = src_setup(&s, devs, n);
	if (r < 0) {
		snprintf(err, errlen, "%s", r == -EFBIG ? "device has too many blocks" : strerror(-r));
		src_cleanup(&s);
		return r;
	}
	r = pthread_create(&reader, NULL, src_reader, &s);
	if (r != 0) {
		src_cleanup(&s);
		snprintf(err, errlen, "cannot start a thread");
		return -r;
	}
	r = src_run(&s, o);
	if (r < 0) {
		int f = src_failed(&s);
		if (f == 0)
			src_fail(&s, r, "%s", strerror(-r));
		/* Tell the destination why, unless it went away or stopped answering. */
		if (f != -ECONNRESET && f != -ECONNABORTED && f != -EPIPE && f != -ETIMEDOUT)
			xfer_send_abort(c, XFER_ABORT_IO, s.err);
		if (!*authority_sent && h && h->resume)
			(void)h->resume(h->ctx);
	}
	xfer_conn_shutdown(c);
	pthread_join(reader, NULL);
	s.st->end_ns = now_ns();
	s.st->bytes_wire = c->bytes_in + c->bytes_out;
	if (r < 0)
		snprintf(err, errlen, "%s", s.err);
	src_cleanup(&s);
	return r;
}

/* ------------------------------------------------------------- destination */

struct dst_dev {
	struct xfer_dev *d;
	uint64_t nblocks;
	uint64_t *has_crc;
	uint32_t *crcs;
	uint64_t digest, ncrc;
	bool completed;
};

int xfer_request(struct xfer_conn *c, uint16_t dev, uint64_t block, uint32_t count)
{
	uint8_t p[12];
	int n = xfer_enc_request(p, sizeof(p), block, count);

	return xfer_send(c, XFER_T_REQUEST, 0, dev, 0, p, (size_t)n);
}

static int dst_ack(struct xfer_conn *c, const struct xfer_msg *m)
{
	if (!(m->hdr.flags & XFER_F_ACK))
		return 0;
	return xfer_send(c, XFER_T_ACK, 0, m->hdr.dev, m->hdr.txid, NULL, 0);
}

#define DST_FAIL(code, r_, ...)                              \
	do {                                                 \
		snprintf(err, errlen, __VA_ARGS__);          \
		abort_code = (code);                         \
		r = (r_);                                    \
		goto out;                                    \
	} while (0)

int xfer_dest_run(struct xfer_conn *c, const struct xfer_dest_opts *o, const struct xfer_hooks *h,
		  struct xfer_stats *st, bool *authority, char *err, size_t errlen)
{
	struct dst_dev devs[XFER_MAX_DEVICES];
	size_t ndev = 0;
	bool devs_done = false;
	_cleanup_free_ uint8_t *buf = NULL, *block = NULL;
	size_t cap = 0, block_cap = 0;
	_cleanup_(xfer_coder_freep) struct xfer_coder *coder = xfer_coder_new();
	struct xfer_stats dummy = { 0 };
	uint16_t abort_code = 0;
	int r = 0;

	*authority = false;
	if (!st)
		st = &dummy;
	st->start_ns = now_ns();
	memset(devs, 0, sizeof(devs));
	if (!coder) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}

	for (;;) {
		struct xfer_msg m;
		struct dst_dev *dd = NULL;

		r = xfer_recv(c, &buf, &cap, &m);
		if (r == 1)
			DST_FAIL(0, -ECONNRESET, "source closed the connection before the migration completed");
		if (r < 0)
			DST_FAIL(r == -EPROTO || r == -EMSGSIZE ? XFER_ABORT_PROTOCOL : 0, r, "%s",
				 c->err[0] ? c->err : strerror(-r));
		if (m.hdr.dev > 0) {
			if (m.hdr.type == XFER_T_DEVINFO) {
				if (devs_done || m.hdr.dev != ndev + 1)
					DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "unexpected device %u", m.hdr.dev);
			} else if (m.hdr.dev > ndev) {
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "message for unknown device %u",
					 m.hdr.dev);
			} else {
				dd = &devs[m.hdr.dev - 1];
			}
		}

		switch (m.hdr.type) {
		case XFER_T_DEVINFO: {
			char name[XFER_MAX_NAME + 1];
			struct xfer_dev *xd = NULL;
			uint64_t nb;

			memcpy(name, m.u.devinfo.name, m.u.devinfo.name_len);
			name[m.u.devinfo.name_len] = 0;
			nb = (m.u.devinfo.size + m.u.devinfo.block_size - 1) / m.u.devinfo.block_size;
			if (nb > XFER_MAX_BLOCKS)
				DST_FAIL(XFER_ABORT_DEVICE, -EFBIG, "device '%s' is too large", name);
			for (size_t i = 0; i < ndev; i++)
				if (str_eq(devs[i].d->name, name))
					DST_FAIL(XFER_ABORT_DEVICE, -EPROTO, "device '%s' announced twice",
						 name);
			r = o->open(o->ctx, m.hdr.dev, name, m.u.devinfo.size, m.u.devinfo.block_size,
				    m.u.devinfo.flags, &xd, err, errlen);
			if (r < 0) {
				abort_code = XFER_ABORT_DEVICE;
				goto out;
			}
			dd = &devs[ndev++];
			dd->d = xd;
			dd->nblocks = nb;
			dd->has_crc = xcalloc(BIT_WORDS(nb) ? BIT_WORDS(nb) : 1, 8);
			dd->crcs = xcalloc(nb ? nb : 1, 4);
			if (m.u.devinfo.block_size > block_cap) {
				free(block);
				block = malloc(m.u.devinfo.block_size);
				if (!block)
					DST_FAIL(0, -ENOMEM, "out of memory");
				block_cap = m.u.devinfo.block_size;
			}
			break;
		}
		case XFER_T_DEVS_DONE:
			if (devs_done || m.u.devs_done.count != ndev)
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "device list does not add up");
			devs_done = true;
			if (o->ready && (r = o->ready(o->ctx)) < 0)
				DST_FAIL(XFER_ABORT_DEVICE, r, "cannot set up the devices: %s", strerror(-r));
			break;
		case XFER_T_HAVE:
			for (uint32_t i = 0; i < m.u.have.count; i++) {
				uint64_t s0 = xfer_get64(m.u.have.ranges + 16 * (size_t)i);
				uint64_t n0 = xfer_get64(m.u.have.ranges + 16 * (size_t)i + 8);
				if (s0 >= dd->nblocks || n0 > dd->nblocks - s0)
					DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "HAVE beyond device '%s'",
						 dd->d->name);
				if (dd->d->ops->mark_present)
					dd->d->ops->mark_present(dd->d, s0, n0);
				st->blocks_have += n0;
			}
			break;
		case XFER_T_BLOCK: {
			uint64_t b = m.u.block.index;
			if (b >= dd->nblocks || m.u.block.raw_len != xfer_dev_block_len(dd->d, b))
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "block %" PRIu64 " does not fit device '%s'",
					 b, dd->d->name);
			r = xfer_block_decode(coder, &m, block, block_cap);
			if (r == -EBADMSG)
				DST_FAIL(XFER_ABORT_CHECKSUM, r, "block %" PRIu64 " of device '%s' failed its checksum",
					 b, dd->d->name);
			if (r < 0)
				DST_FAIL(XFER_ABORT_PROTOCOL, r, "block %" PRIu64 " of device '%s' cannot be decoded",
					 b, dd->d->name);
			r = dd->d->ops->deliver(dd->d, b, block, m.u.block.raw_len);
			if (r < 0)
				DST_FAIL(XFER_ABORT_IO, r, "cannot write block %" PRIu64 " of device '%s': %s", b,
					 dd->d->name, strerror(-r));
			if (bit_test(dd->has_crc, b))
				dd->digest -= xfer_digest_mix(b, dd->crcs[b]);
			else
				dd->ncrc++;
			bit_set(dd->has_crc, b);
			dd->crcs[b] = m.u.block.crc;
			dd->digest += xfer_digest_mix(b, m.u.block.crc);
			st->bytes_data += m.u.block.raw_len;
			if (m.u.block.enc == XFER_ENC_RAW)
				st->blocks_raw++;
			else if (m.u.block.enc == XFER_ENC_ZERO)
				st->blocks_zero++;
			else
				st->blocks_zstd++;
			if (m.hdr.flags & XFER_F_PRIORITY)
				st->blocks_priority++;
			if (h && h->progress)
				h->progress(h->ctx, st->bytes_data, 0);
			break;
		}
		case XFER_T_DIRTY: {
			_cleanup_free_ uint64_t *list = xcalloc(m.u.dirty.count ? m.u.dirty.count : 1, 8);
			for (uint32_t i = 0; i < m.u.dirty.count; i++) {
				list[i] = xfer_get64(m.u.dirty.blocks + 8 * (size_t)i);
				if (list[i] >= dd->nblocks)
					DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "dirty block beyond device '%s'",
						 dd->d->name);
			}
			if (*authority)
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "dirty list after the authority transfer");
			if (dd->d->ops->invalidate && m.u.dirty.count &&
			    (r = dd->d->ops->invalidate(dd->d, list, m.u.dirty.count)) < 0)
				DST_FAIL(XFER_ABORT_IO, r, "cannot apply the dirty list of device '%s'",
					 dd->d->name);
			r = dst_ack(c, &m);
			if (r < 0)
				DST_FAIL(0, r, "%s", c->err);
			break;
		}
		case XFER_T_AUTHORITY:
			if (*authority || !devs_done)
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "unexpected authority transfer");
			if (h && h->authority &&
			    (r = h->authority(h->ctx, m.u.authority.data, m.u.authority.len)) < 0)
				DST_FAIL(XFER_ABORT_IO, r, "cannot take over the devices: %s", strerror(-r));
			*authority = true;
			st->authority_ns = now_ns();
			r = dst_ack(c, &m);
			if (r < 0)
				DST_FAIL(0, r, "%s", c->err);
			break;
		case XFER_T_COMPLETED:
			if (m.u.completed.blocks != dd->ncrc || m.u.completed.digest != dd->digest)
				DST_FAIL(XFER_ABORT_CHECKSUM, -EBADMSG,
					 "device '%s' does not match the source's digest", dd->d->name);
			dd->completed = true;
			break;
		case XFER_T_DONE:
			if (!*authority)
				DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "migration ended without an authority transfer");
			for (size_t i = 0; i < ndev; i++)
				if (!devs[i].completed)
					DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "device '%s' was not completed",
						 devs[i].d->name);
			if (h && h->resumed) {
				uint8_t t[8];
				uint64_t ns = h->resumed(h->ctx);
				if (ns && (r = xfer_send(c, XFER_T_RESUMED, 0, 0, 0, t,
							 (size_t)xfer_enc_u64(t, sizeof t, ns))) < 0)
					DST_FAIL(0, r, "%s", c->err);
			}
			r = dst_ack(c, &m);
			if (r < 0)
				DST_FAIL(0, r, "%s", c->err);
			r = 0;
			goto out;
		case XFER_T_ABORT:
			DST_FAIL(0, -ECONNABORTED, "source aborted: %.*s", (int)m.u.abort.reason_len,
				 m.u.abort.reason);
		default:
			DST_FAIL(XFER_ABORT_PROTOCOL, -EPROTO, "unexpected %s message from the source",
				 xfer_type_name(m.hdr.type));
		}
	}
out:
	if (r < 0 && abort_code)
		xfer_send_abort(c, abort_code, err);
	for (size_t i = 0; i < ndev; i++) {
		free(devs[i].has_crc);
		free(devs[i].crcs);
	}
	st->end_ns = now_ns();
	st->bytes_wire = c->bytes_in + c->bytes_out;
	return r;
}
