/*
 * Plain (TCP, UNIX) and TLS connections for migrations. Sockets are
 * non-blocking after set-up; blocked readers and writers wait in poll(), so a
 * shutdown() of the socket wakes all of them at once when a migration fails.
 * OpenSSL errors are turned into one readable reason at this boundary.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/util.h"
#include "core/xfer/transport.h"

struct xfer_tls {
	SSL_CTX *ctx;
	bool server;
	char *server_name;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(SSL_CTX *, SSL_CTX_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(SSL *, SSL_free)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct addrinfo *, freeaddrinfo)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct xfer_conn *, xfer_conn_free)

#define HANDSHAKE_TIMEOUT_S 30
#define DEFAULT_TIMEOUT_MS 30000u

/* The receive timeout new connections get (transport.timeout). */
static uint32_t default_idle_ms = DEFAULT_TIMEOUT_MS;

void xfer_transport_init(void)
{
	signal(SIGPIPE, SIG_IGN);
}

void xfer_transport_set_timeout(uint64_t timeout_ns)
{
	uint64_t ms = (timeout_ns + 999999) / 1000000;

	if (ms && ms < XFER_MIN_TIMEOUT_MS)
		ms = XFER_MIN_TIMEOUT_MS;
	if (ms > XFER_MAX_TIMEOUT_MS)
		ms = XFER_MAX_TIMEOUT_MS;
	__atomic_store_n(&default_idle_ms, (uint32_t)ms, __ATOMIC_RELAXED);
}

/* The most useful line from OpenSSL's error queue (the last, deepest one). */
static void ssl_reason(char *buf, size_t len, const char *fallback)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last) {
		const char *r = ERR_reason_error_string(last);
		int alert = ERR_GET_REASON(last) - SSL_AD_REASON_OFFSET;

		if (!r)
			r = "TLS error";
		/* An alert the peer sent: say which side objected, and to what. */
		if (alert == SSL_AD_BAD_CERTIFICATE || alert == SSL_AD_UNSUPPORTED_CERTIFICATE ||
		    alert == SSL_AD_CERTIFICATE_REVOKED || alert == SSL_AD_CERTIFICATE_EXPIRED ||
		    alert == SSL_AD_CERTIFICATE_UNKNOWN || alert == SSL_AD_UNKNOWN_CA ||
		    alert == SSL_AD_ACCESS_DENIED || alert == SSL_AD_CERTIFICATE_REQUIRED)
			snprintf(buf, len, "the peer refused this side's certificate (%s)", r);
		else if (alert > 0 && alert < 256)
			snprintf(buf, len, "the peer ended the TLS session (%s)", r);
		else
			snprintf(buf, len, "%s", r);
	} else {
		snprintf(buf, len, "%s", fallback);
	}
}

int xfer_tls_new(const struct cfg_tls *cfg, bool server, struct xfer_tls **out, char *err,
		 size_t errlen)
{
	_cleanup_(SSL_CTX_freep) SSL_CTX *ctx = NULL;
	char why[200];

	*out = NULL;
	if (!cfg || !cfg_tls_enabled(cfg))
		return 0;
	ERR_clear_error();
	ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	/* No session tickets: they are post-handshake writes from the server that
	 * would otherwise race with our first frames, and we never resume. */
	SSL_CTX_set_num_tickets(ctx, 0);
	/* Throughput: several records per read system call instead of two calls
	 * per record, and AES-128-GCM first (all TLS 1.3 suites are strong; with
	 * AES instructions this one costs the least CPU per byte). */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_default_read_buffer_len(ctx, 128 * 1024);
	(void)SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
					    "TLS_CHACHA20_POLY1305_SHA256");
	if (server)
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);

	if (server && str_empty(cfg->certificate)) {
		snprintf(err, errlen, "a TLS listener needs a certificate and a key");
		return -EINVAL;
	}
	if (!str_empty(cfg->certificate)) {
		if (SSL_CTX_use_certificate_chain_file(ctx, cfg->certificate) != 1) {
			ssl_reason(why, sizeof(why), "unreadable");
			snprintf(err, errlen, "cannot load certificate '%s': %s", cfg->certificate, why);
			return -EINVAL;
		}
		const char *key = str_empty(cfg->key) ? cfg->certificate : cfg->key;
		if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
			ssl_reason(why, sizeof(why), "unreadable");
			if (strstr(why, "mismatch"))
				snprintf(err, errlen, "private key '%s' does not match certificate '%s'", key,
					 cfg->certificate);
			else
				snprintf(err, errlen, "cannot load private key '%s': %s", key, why);
			return -EINVAL;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			snprintf(err, errlen, "private key '%s' does not match certificate '%s'", key,
				 cfg->certificate);
			return -EINVAL;
		}
	}
	if (!str_empty(cfg->ca)) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
			ssl_reason(why, sizeof(why), "unreadable");
			snprintf(err, errlen, "cannot load CA '%s': %s", cfg->ca, why);
			return -EINVAL;
		}
	}
	if (server) {
		if (cfg->verify_peer) {
			if (str_empty(cfg->ca)) {
				snprintf(err, errlen, "verifying clients needs a CA");
				return -EINVAL;
			}
			SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
		} else {
			SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		}
	} else {
		/*
		 * A client always verifies the server: against the configured CA,
		 * else against the system's store. A client certificate alone must
		 * not turn verification off, or anyone could pose as the server.
		 */
		if (str_empty(cfg->ca))
			SSL_CTX_set_default_verify_paths(ctx);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}

	struct xfer_tls *t = xcalloc(1, sizeof(*t));
	t->ctx = TAKE_PTR(ctx);
	t->server = server;
	t->server_name = xstrdup(str_empty(cfg->server_name) ? NULL : cfg->server_name);
	*out = t;
	return 0;
}

void xfer_tls_free(struct xfer_tls *t)
{
	if (!t)
		return;
	SSL_CTX_free(t->ctx);
	free(t->server_name);
	free(t);
}

/* ---- plain sockets ---- */

static ssize_t plain_read(struct xfer_conn *c, void *buf, size_t len, short *events)
{
	ssize_t n = recv(c->fd, buf, len, 0);

	*events = POLLIN;
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t plain_write(struct xfer_conn *c, const void *buf, size_t len, short *events)
{
	ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);

	*events = POLLOUT;
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static void plain_close(struct xfer_conn *c)
{
	(void)c;
}

static const struct xfer_conn_ops plain_ops = {
	.name = "plain",
	.read = plain_read,
	.write = plain_write,
	.close = plain_close,
};

/* ---- TLS ---- */

static ssize_t tls_io(struct xfer_conn *c, void *rbuf, const void *wbuf, size_t len,
		      short *events)
{
	size_t done = 0;
	int r, e;

	pthread_mutex_lock(&c->ssl_lock);
	ERR_clear_error();
	if (rbuf)
		r = SSL_read_ex(c->ssl, rbuf, len, &done);
	else
		r = SSL_write_ex(c->ssl, wbuf, len, &done);
	e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_SSL)
		ssl_reason(c->err, sizeof(c->err), "TLS error");
	pthread_mutex_unlock(&c->ssl_lock);

	switch (e) {
	case SSL_ERROR_NONE:
		return (ssize_t)done;
	case SSL_ERROR_WANT_READ:
		*events = POLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		*events = POLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (errno == EAGAIN) {
			*events = rbuf ? POLLIN : POLLOUT;
			return -EAGAIN;
		}
		/* An EOF without close_notify: treat as a reset. */
		return rbuf && errno == 0 ? 0 : -(errno ? errno : ECONNRESET);
	default:
		return -EPROTO;
	}
}

static ssize_t tls_read(struct xfer_conn *c, void *buf, size_t len, short *events)
{
	return tls_io(c, buf, NULL, len, events);
}

static ssize_t tls_write(struct xfer_conn *c, const void *buf, size_t len, short *events)
{
	return tls_io(c, NULL, buf, len, events);
}

static void tls_close(struct xfer_conn *c)
{
	if (c->ssl) {
		if (!c->eof)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
}

static const struct xfer_conn_ops tls_ops = {
	.name = "tls",
	.read = tls_read,
	.write = tls_write,
	.close = tls_close,
};

/* ---- connections ---- */

/*
 * Set the connection's failure reason (KEEP: unless one is there already).
 * The reading and the writing thread may fail at the same moment.
 */
static void conn_err(struct xfer_conn *c, bool keep, const char *fmt, ...) _printf_(3, 4);
static void conn_err(struct xfer_conn *c, bool keep, const char *fmt, ...)
{
	char buf[sizeof(c->err)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&c->err_lock);
	if (!keep || !c->err[0])
		memcpy(c->err, buf, sizeof(buf));
	pthread_mutex_unlock(&c->err_lock);
}

static void keepalive_wake(struct xfer_conn *c, bool stop);
static void keepalive_stop(struct xfer_conn *c);

struct xfer_conn *xfer_conn_from_fd(int fd, const char *peer)
{
	struct xfer_conn *c = xcalloc(1, sizeof(*c));

	c->ops = &plain_ops;
	c->fd = fd;
	c->idle_ms = __atomic_load_n(&default_idle_ms, __ATOMIC_RELAXED);
	c->peer_idle_ms = XFER_IDLE_UNKNOWN;
	c->last_out_ns = now_ns();
	pthread_mutex_init(&c->ssl_lock, NULL);
	pthread_mutex_init(&c->write_lock, NULL);
	pthread_mutex_init(&c->err_lock, NULL);
	snprintf(c->peer, sizeof(c->peer), "%s", peer ? peer : "peer");
	return c;
}

void xfer_conn_free(struct xfer_conn *c)
{
	if (!c)
		return;
	keepalive_stop(c);
	c->ops->close(c);
	if (c->fd >= 0)
		close(c->fd);
	pthread_mutex_destroy(&c->ssl_lock);
	pthread_mutex_destroy(&c->write_lock);
	pthread_mutex_destroy(&c->err_lock);
	free(c->rbuf);
	free(c->wbuf);
	free(c);
}

void xfer_conn_shutdown(struct xfer_conn *c)
{
	if (!c)
		return;
	keepalive_wake(c, true);
	if (c->fd >= 0)
		(void)shutdown(c->fd, SHUT_RDWR);
}

static int set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
	return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

static int wait_fd(struct xfer_conn *c, short events)
{
	struct pollfd p = { .fd = c->fd, .events = events };

	for (;;) {
		int r = poll(&p, 1, c->timeout_ms > 0 ? c->timeout_ms : -1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			char d[32];
			format_duration((uint64_t)c->timeout_ms * 1000000ull, d, sizeof(d));
			if (events & POLLIN)
				conn_err(c, true, "no message for %s: the peer stopped answering", d);
			else
				conn_err(c, true, "the peer took no data for %s: it stopped answering", d);
			return -ETIMEDOUT;
		}
		return 0;
	}
}

#define RBUF_SIZE (128u * 1024u)

/*
 * Reads go through a small buffer so that a frame header and a small
 * payload cost one system call, not two; large payloads are read directly.
 */
int xfer_conn_read_full(struct xfer_conn *c, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t got = 0;

	while (got < len) {
		if (c->rlen > c->rpos) {
			size_t n = c->rlen - c->rpos < len - got ? c->rlen - c->rpos : len - got;
			memcpy(p + got, c->rbuf + c->rpos, n);
			c->rpos += n;
			got += n;
			continue;
		}
		bool direct = len - got >= RBUF_SIZE / 2;
		if (!direct && !c->rbuf) {
			c->rbuf = malloc(RBUF_SIZE);
			if (!c->rbuf)
				return -ENOMEM;
		}
		short ev = POLLIN;
		ssize_t n = direct ? c->ops->read(c, p + got, len - got, &ev)
				   : c->ops->read(c, c->rbuf, RBUF_SIZE, &ev);
		if (n == -EAGAIN) {
			int r = wait_fd(c, ev);
			if (r < 0)
				return r;
			continue;
		}
		if (n == -EINTR)
			continue;
		if (n < 0) {
			conn_err(c, true, "%s", strerror((int)-n));
			return (int)n;
		}
		if (n == 0) {
			c->eof = true;
			if (got == 0)
				return 1;
			conn_err(c, false, "connection closed in the middle of a frame");
			return -ECONNRESET;
		}
		c->bytes_in += (uint64_t)n;
		if (direct) {
			got += (size_t)n;
		} else {
			c->rpos = 0;
			c->rlen = (size_t)n;
		}
	}
	return 0;
}

static int write_all_locked(struct xfer_conn *c, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		short ev = POLLOUT;
		ssize_t n = c->ops->write(c, p, len, &ev);
		if (n == -EAGAIN) {
			int r = wait_fd(c, ev);
			if (r < 0)
				return r;
			continue;
		}
		if (n == -EINTR)
			continue;
		if (n <= 0) {
			int r = n == 0 ? -EPIPE : (int)n;
			conn_err(c, true, "%s", strerror(-r));
			return r;
		}
		p += n;
		len -= (size_t)n;
		c->bytes_out += (uint64_t)n;
		__atomic_store_n(&c->last_out_ns, now_ns(), __ATOMIC_RELAXED);
	}
	return 0;
}

#define TLS_GATHER 16384u /* the largest TLS record's plaintext */
#define WBUF_SIZE TLS_GATHER

/* Plain sockets: one sendmsg for the whole frame, continuing after partial writes. */
static int sendmsg_all_locked(struct xfer_conn *c, const struct iovec *iov, int n)
{
	struct iovec v[8];
	int cnt = 0;

	for (int i = 0; i < n && cnt < (int)ARRAY_SIZE(v); i++)
		if (iov[i].iov_len)
			v[cnt++] = iov[i];
	struct iovec *cur = v;
	while (cnt > 0) {
		struct msghdr mh = { .msg_iov = cur, .msg_iovlen = (size_t)cnt };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int r = wait_fd(c, POLLOUT);
				if (r < 0)
					return r;
				continue;
			}
			int r = -errno;
			conn_err(c, true, "%s", strerror(errno));
			return r;
		}
		c->bytes_out += (uint64_t)w;
		__atomic_store_n(&c->last_out_ns, now_ns(), __ATOMIC_RELAXED);
		while (cnt > 0 && (size_t)w >= cur->iov_len) {
			w -= (ssize_t)cur->iov_len;
			cur++;
			cnt--;
		}
		if (cnt > 0) {
			cur->iov_base = (uint8_t *)cur->iov_base + w;
			cur->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int writev_locked(struct xfer_conn *c, const struct iovec *iov, int n)
{
	size_t total = 0;
	int r = 0;

	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	if (c->ops == &plain_ops) {
		r = sendmsg_all_locked(c, iov, n);
	} else if (c->wbuf || (c->wbuf = malloc(WBUF_SIZE))) {
		/* TLS: the header goes out in one record with the start of the
		 * payload rather than in a record of its own; only that first
		 * record's worth is copied, the rest is written from the payload
		 * where it is. */
		size_t head = total < TLS_GATHER ? total : TLS_GATHER, off = 0;
		int i = 0;
		size_t part = 0;
		while (off < head) {
			size_t m = iov[i].iov_len - part < head - off ? iov[i].iov_len - part : head - off;
			memcpy(c->wbuf + off, (const uint8_t *)iov[i].iov_base + part, m);
			off += m;
			part += m;
			if (part == iov[i].iov_len) {
				i++;
				part = 0;
			}
		}
		r = write_all_locked(c, c->wbuf, head);
		for (; i < n && r == 0; i++, part = 0)
			if (iov[i].iov_len > part)
				r = write_all_locked(c, (const uint8_t *)iov[i].iov_base + part,
						     iov[i].iov_len - part);
	} else {
		for (int i = 0; i < n && r == 0; i++)
			if (iov[i].iov_len)
				r = write_all_locked(c, iov[i].iov_base, iov[i].iov_len);
	}
	return r;
}

int xfer_conn_writev(struct xfer_conn *c, const struct iovec *iov, int n)
{
	int r;

	pthread_mutex_lock(&c->write_lock);
	r = writev_locked(c, iov, n);
	pthread_mutex_unlock(&c->write_lock);
	return r;
}

/* One frame; with TRY, -EBUSY instead of waiting while another frame is being written. */
static int send_frame(struct xfer_conn *c, const struct xfer_hdr *h, const void *payload, bool try)
{
	uint8_t hdr[XFER_HDR_LEN];
	int r;

	xfer_hdr_encode(hdr, h);
	struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)payload, h->len } };
	if (!try)
		return xfer_conn_writev(c, iov, 2);
	if (pthread_mutex_trylock(&c->write_lock) != 0)
		return -EBUSY;
	r = writev_locked(c, iov, 2);
	pthread_mutex_unlock(&c->write_lock);
	return r;
}

int xfer_send(struct xfer_conn *c, uint8_t type, uint8_t flags, uint16_t dev, uint32_t txid,
	      const void *payload, size_t len)
{
	struct xfer_hdr h = { .len = (uint32_t)len, .type = type, .flags = flags, .dev = dev,
			      .txid = txid };

	if (len > XFER_MAX_PAYLOAD)
		return -EMSGSIZE;
	return send_frame(c, &h, payload, false);
}

/* ---- keepalive ---- */

struct xfer_keepalive {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* on the monotonic clock */
	bool stop;
};

/* KEEPALIVE carries this side's receive timeout, so the peer knows how often to speak. */
static int send_keepalive(struct xfer_conn *c, bool try)
{
	uint8_t p[4];
	struct xfer_hdr h = { .len = sizeof(p), .type = XFER_T_KEEPALIVE };

	xfer_put32(p, c->idle_ms);
	return send_frame(c, &h, p, try);
}

/*
 * How long this side may stay silent: a quarter of the smaller receive
 * timeout of the two sides (0: neither has one). Until the peer's first
 * KEEPALIVE arrives, assume the smallest timeout it could announce.
 */
static uint64_t keepalive_interval_ns(struct xfer_conn *c)
{
	uint32_t t = c->idle_ms, peer = __atomic_load_n(&c->peer_idle_ms, __ATOMIC_RELAXED);

	if (peer == XFER_IDLE_UNKNOWN)
		peer = XFER_MIN_TIMEOUT_MS;
	if (peer && (!t || peer < t))
		t = peer;
	return (uint64_t)t * 1000000ull / 4;
}

static void deadline_wait(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ull),
			       .tv_nsec = (long)(ns % 1000000000ull) };

	(void)pthread_cond_timedwait(cond, lock, &ts);
}

/*
 * Runs beside the connection's reader and writer: whatever the session is
 * busy with (a suspend hook, a throttle, a VM restore), the peer hears from
 * this side. It never waits for the write lock: a frame being written keeps
 * the line busy anyway. Ends at shutdown or when the connection is gone.
 */
static void *keepalive_main(void *arg)
{
	struct xfer_conn *c = arg;
	struct xfer_keepalive *ka = c->ka;
	uint64_t not_before = 0;

	thread_name("xfer-keepalive");
	pthread_mutex_lock(&ka->lock);
	while (!ka->stop) {
		uint64_t iv = keepalive_interval_ns(c);
		uint64_t due = __atomic_load_n(&c->last_out_ns, __ATOMIC_RELAXED) + iv;

		if (iv == 0) {
			pthread_cond_wait(&ka->cond, &ka->lock);
			continue;
		}
		if (due < not_before)
			due = not_before;
		if (now_ns() < due) {
			deadline_wait(&ka->cond, &ka->lock, due);
			continue;
		}
		pthread_mutex_unlock(&ka->lock);
		int r = send_keepalive(c, true);
		pthread_mutex_lock(&ka->lock);
		if (r < 0 && r != -EBUSY)
			break;
		not_before = now_ns() + iv;
	}
	pthread_mutex_unlock(&ka->lock);
	return NULL;
}

static int keepalive_start(struct xfer_conn *c)
{
	struct xfer_keepalive *ka;
	pthread_condattr_t attr;
	int r;

	/* The first frame after the hello announces this side's timeout. */
	r = send_keepalive(c, false);
	if (r < 0)
		return r;
	ka = xcalloc(1, sizeof(*ka));
	pthread_mutex_init(&ka->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&ka->cond, &attr);
	pthread_condattr_destroy(&attr);
	c->ka = ka;
	r = pthread_create(&ka->thread, NULL, keepalive_main, c);
	if (r != 0) {
		c->ka = NULL;
		pthread_cond_destroy(&ka->cond);
		pthread_mutex_destroy(&ka->lock);
		free(ka);
		conn_err(c, false, "cannot start a thread");
		return -r;
	}
	return 0;
}

/* Make the keepalive sender look again (the peer's timeout changed), or stop it. */
static void keepalive_wake(struct xfer_conn *c, bool stop)
{
	if (!c->ka)
		return;
	pthread_mutex_lock(&c->ka->lock);
	if (stop)
		c->ka->stop = true;
	pthread_cond_signal(&c->ka->cond);
	pthread_mutex_unlock(&c->ka->lock);
}

static void keepalive_stop(struct xfer_conn *c)
{
	struct xfer_keepalive *ka = c->ka;

	if (!ka)
		return;
	keepalive_wake(c, true);
	pthread_join(ka->thread, NULL);
	c->ka = NULL;
	pthread_cond_destroy(&ka->cond);
	pthread_mutex_destroy(&ka->lock);
	free(ka);
}

static void note_peer_timeout(struct xfer_conn *c, uint32_t ms)
{
	if (__atomic_exchange_n(&c->peer_idle_ms, ms, __ATOMIC_RELAXED) != ms)
		keepalive_wake(c, false);
}

static int recv_frame(struct xfer_conn *c, uint8_t **buf, size_t *cap, struct xfer_msg *m)
{
	uint8_t raw[XFER_HDR_LEN];
	struct xfer_hdr h;
	int r;

	r = xfer_conn_read_full(c, raw, sizeof(raw));
	if (r != 0)
		return r;
	r = xfer_hdr_decode(raw, &h);
	if (r < 0) {
		conn_err(c, false, "%s",
			 r == -EMSGSIZE ? "frame larger than the protocol limit" : "malformed frame header");
		return r;
	}
	if (h.len > *cap) {
		size_t want = h.len < 65536 ? 65536 : h.len;
		uint8_t *nb = realloc(*buf, want);
		if (!nb)
			return -ENOMEM;
		*buf = nb;
		*cap = want;
	}
	if (h.len) {
		r = xfer_conn_read_full(c, *buf, h.len);
		if (r == 1) {
			conn_err(c, false, "connection closed in the middle of a frame");
			return -ECONNRESET;
		}
		if (r < 0)
			return r;
	}
	r = xfer_msg_decode(&h, *buf, h.len, m);
	if (r < 0)
		conn_err(c, false, "malformed %s message", xfer_type_name(h.type));
	return r;
}

int xfer_recv(struct xfer_conn *c, uint8_t **buf, size_t *cap, struct xfer_msg *m)
{
	for (;;) {
		int r = recv_frame(c, buf, cap, m);
		if (r != 0 || m->hdr.type != XFER_T_KEEPALIVE)
			return r;
		note_peer_timeout(c, m->u.keepalive.timeout_ms);
	}
}

void xfer_send_abort(struct xfer_conn *c, uint16_t code, const char *reason)
{
	uint8_t buf[4 + XFER_MAX_REASON];
	int n = xfer_enc_abort(buf, sizeof(buf), code, reason);

	if (n > 0)
		(void)xfer_send(c, XFER_T_ABORT, 0, 0, 0, buf, (size_t)n);
}

int xfer_handshake(struct xfer_conn *c, enum xfer_role role, uint32_t caps)
{
	uint8_t mine[XFER_HELLO_LEN], theirs[XFER_HELLO_LEN];
	struct xfer_hello h = { .version = XFER_VERSION, .role = (uint16_t)role,
				.caps = caps | XFER_CAP_KEEPALIVE, .max_payload = XFER_MAX_PAYLOAD };
	struct iovec iov = { mine, sizeof(mine) };
	int r;

	xfer_hello_encode(mine, &h);
	/* A silent peer may not hold a listener's only session slot forever. */
	c->timeout_ms = HANDSHAKE_TIMEOUT_S * 1000;
	r = xfer_conn_writev(c, &iov, 1);
	if (r < 0) {
		c->timeout_ms = 0;
		return r;
	}
	r = xfer_conn_read_full(c, theirs, sizeof(theirs));
	c->timeout_ms = 0;
	if (r == 1 || r == -ECONNRESET) {
		/* A TLS peer that refused us has said why already (c->err). */
		if (c->ops != &tls_ops)
			conn_err(c, false,
				 "peer closed the connection during the handshake (a TLS listener does that to plaintext clients)");
		else if (!c->err[0] || r == 1)
			conn_err(c, false, "peer closed the connection during the handshake");
		return -ECONNRESET;
	}
	if (r < 0)
		return r;
	r = xfer_hello_decode(theirs, &c->hello);
	if (r == -EPROTONOSUPPORT) {
		conn_err(c, false,
			 "peer speaks protocol version %u, this drafter speaks version %u",
			 c->hello.version, XFER_VERSION);
		return r;
	}
	if (r < 0) {
		if (theirs[0] == 0x16 || theirs[0] == 0x15)
			conn_err(c, false,
				 "peer speaks TLS but this side is plaintext (configure TLS on both sides)");
		else
			conn_err(c, false, "peer does not speak the drafter protocol");
		return r;
	}
	if (c->hello.role == (uint16_t)role) {
		conn_err(c, false, "peer is also a %s",
			 role == XFER_ROLE_SOURCE ? "source" : "destination");
		return -EPROTO;
	}
	/* A peer without keepalives may stay silent for long: no timeout then. */
	if (!(c->hello.caps & XFER_CAP_KEEPALIVE))
		return 0;
	c->timeout_ms = (int)c->idle_ms;
	return keepalive_start(c);
}

/* ---- addresses ---- */

int xfer_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t hl;

	if (!addr)
		return -EINVAL;
	if (addr[0] == '[') {
		const char *end = strchr(addr, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		hl = (size_t)(end - addr - 1);
		if (hl >= hostlen)
			return -EINVAL;
		memcpy(host, addr + 1, hl);
		host[hl] = 0;
		colon = end + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - addr);
		if (hl >= hostlen || memchr(addr, ':', hl))
			return -EINVAL;
		memcpy(host, addr, hl);
		host[hl] = 0;
	}
	uint32_t pn;
	if (parse_u32(colon + 1, &pn) < 0 || pn > 65535)
		return -EINVAL;
	if (strlen(colon + 1) >= portlen)
		return -EINVAL;
	snprintf(port, portlen, "%s", colon + 1);
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) == 0 || strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
	return 0;
}

static void tune_socket(int fd, int family)
{
	int one = 1;

	if (family == AF_INET || family == AF_INET6) {
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* Bound the kernel's unsent backlog so a priority frame queued by us
		 * overtakes bulk data that is still in user space (docs/protocol.md). */
		int lowat = 256 * 1024;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	}
}

int xfer_listen(const char *addr, int *out, char *err, size_t errlen)
{
	_cleanup_close_ int fd = -EBADF;
	int one = 1;

	if (str_empty(addr)) {
		snprintf(err, errlen, "no listen address");
		return -EINVAL;
	}
	if (str_startswith(addr, "unix:")) {
		struct sockaddr_un sa;
		socklen_t len;
		struct stat st;
		int r = unix_addr(addr + 5, &sa, &len);
		if (r < 0) {
			snprintf(err, errlen, "bad socket path in '%s'", addr);
			return r;
		}
		if (lstat(addr + 5, &st) == 0 && S_ISSOCK(st.st_mode))
			(void)unlink(addr + 5);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 64) < 0) {
			r = -errno;
			snprintf(err, errlen, "cannot listen on '%s': %s", addr, strerror(errno));
			return r;
		}
		*out = TAKE_FD(fd);
		return 0;
	}

	char host[256], port[16];
	if (xfer_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "bad listen address '%s' (want host:port, [v6]:port, :port or unix:PATH)",
			 addr);
		return -EINVAL;
	}
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE };
	_cleanup_(freeaddrinfop) struct addrinfo *res = NULL;
	int gr;
	if (host[0] == 0) {
		/* ":port" means every address: one IPv6 socket that also takes IPv4. */
		hints.ai_family = AF_INET6;
		gr = getaddrinfo(NULL, port, &hints, &res);
		if (gr != 0) {
			hints.ai_family = AF_INET;
			gr = getaddrinfo(NULL, port, &hints, &res);
		}
	} else {
		gr = getaddrinfo(host, port, &hints, &res);
	}
	if (gr != 0) {
		snprintf(err, errlen, "cannot resolve '%s': %s", addr, gai_strerror(gr));
		return -EADDRNOTAVAIL;
	}
	int last = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6 && host[0] == 0) {
			int zero = 0;
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		}
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
			*out = TAKE_FD(fd);
			return 0;
		}
		last = -errno;
		closep(&fd);
		fd = -EBADF;
	}
	snprintf(err, errlen, "cannot listen on '%s': %s", addr, strerror(-last));
	return last;
}

static void describe_peer(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char h[INET6_ADDRSTRLEN + 2] = "?", p[8] = "?";

	if (ss->ss_family == AF_UNIX) {
		snprintf(buf, len, "unix socket client");
		return;
	}
	(void)getnameinfo((const struct sockaddr *)ss, sizeof(*ss), h, sizeof(h), p, sizeof(p),
			  NI_NUMERICHOST | NI_NUMERICSERV);
	if (ss->ss_family == AF_INET6)
		snprintf(buf, len, "[%s]:%s", h, p);
	else
		snprintf(buf, len, "%s:%s", h, p);
}

static void set_timeouts(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/*
 * After a refused handshake: closing a socket with unread input sends a
 * reset, which destroys the alert we just sent. Half-close and drain what
 * the client still sends (bounded), so it can read why it was refused.
 */
static void linger_close(int fd)
{
	char buf[4096];
	size_t total = 0;
	struct timeval tv = { .tv_sec = 2 };

	(void)shutdown(fd, SHUT_WR);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (total < (1u << 20)) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		total += (size_t)n;
	}
}

/* Run the TLS handshake on a blocking socket with timeouts, then go non-blocking. */
static int tls_start(struct xfer_conn *c, struct xfer_tls *tls, const char *host)
{
	_cleanup_(SSL_freep) SSL *ssl = NULL;
	int r;
	char why[200];

	ERR_clear_error();
	ssl = SSL_new(tls->ctx);
	if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
		conn_err(c, false, "cannot set up TLS");
		return -ENOMEM;
	}
	if (!tls->server) {
		const char *name = tls->server_name ? tls->server_name : host;
		if (name && name[0]) {
			SSL_set_tlsext_host_name(ssl, name);
			if (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER)
				SSL_set1_host(ssl, name);
		}
	}
	r = tls->server ? SSL_accept(ssl) : SSL_connect(ssl);
	if (r != 1) {
		int e = SSL_get_error(ssl, r);
		long v = SSL_get_verify_result(ssl);
		if (v != X509_V_OK)
			snprintf(why, sizeof(why), "certificate verification failed: %s",
				 X509_verify_cert_error_string(v));
		else if (e == SSL_ERROR_SYSCALL)
			snprintf(why, sizeof(why), "%s",
				 errno == EAGAIN ? "timed out" : errno ? strerror(errno) : "peer closed the connection");
		else
			ssl_reason(why, sizeof(why), "handshake failed");
		if (strstr(why, "wrong version number") || strstr(why, "packet length too long") ||
		    strstr(why, "http request"))
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
				 " (the peer is not speaking TLS)");
		conn_err(c, false, "TLS handshake failed: %s", why);
		return -EPROTO;
	}
	c->ssl = TAKE_PTR(ssl);
	c->ops = &tls_ops;
	return 0;
}

int xfer_accept_fd(int lfd, int *fd, char *peer, size_t peerlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int r;

	do
		r = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	describe_peer(&ss, peer, peerlen);
	tune_socket(r, ss.ss_family);
	*fd = r;
	return 0;
}

int xfer_conn_accepted(int fd, const char *peer, struct xfer_tls *tls, struct xfer_conn **out,
		       char *err, size_t errlen)
{
	_cleanup_(xfer_conn_freep) struct xfer_conn *c = xfer_conn_from_fd(fd, peer);
	int r;

	set_timeouts(fd, HANDSHAKE_TIMEOUT_S);
	if (tls) {
		r = tls_start(c, tls, NULL);
		if (r < 0) {
			snprintf(err, errlen, "%s", c->err);
			linger_close(fd);
			return r;
		}
	}
	set_timeouts(fd, 0);
	r = set_nonblock(fd, true);
	if (r < 0)
		return r;
	*out = TAKE_PTR(c);
	return 0;
}

int xfer_accept(int lfd, struct xfer_tls *tls, struct xfer_conn **out, char *err, size_t errlen)
{
	char peer[128];
	int fd, r;

	r = xfer_accept_fd(lfd, &fd, peer, sizeof(peer));
	if (r < 0) {
		snprintf(err, errlen, "cannot accept: %s", strerror(-r));
		return r;
	}
	return xfer_conn_accepted(fd, peer, tls, out, err, errlen);
}

int xfer_dial(const char *addr, struct xfer_tls *tls, struct xfer_conn **out, char *err,
	      size_t errlen)
{
	_cleanup_close_ int fd = -EBADF;
	char host[256] = "", port[16];
	int r, family;

	if (str_empty(addr)) {
		snprintf(err, errlen, "no remote address");
		return -EINVAL;
	}
	if (str_startswith(addr, "unix:")) {
		struct sockaddr_un sa;
		socklen_t len;
		r = unix_addr(addr + 5, &sa, &len);
		if (r < 0) {
			snprintf(err, errlen, "bad socket path in '%s'", addr);
			return r;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) < 0) {
			r = -errno;
			snprintf(err, errlen, "%s", strerror(errno));
			return r;
		}
		family = AF_UNIX;
	} else {
		if (xfer_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
			snprintf(err, errlen, "bad address (want host:port, [v6]:port or unix:PATH)");
			return -EINVAL;
		}
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
		_cleanup_(freeaddrinfop) struct addrinfo *res = NULL;
		int gr = getaddrinfo(host[0] ? host : "localhost", port, &hints, &res);
		if (gr != 0) {
			snprintf(err, errlen, "cannot resolve: %s", gai_strerror(gr));
			return -EADDRNOTAVAIL;
		}
		r = -ECONNREFUSED;
		family = AF_INET;
		for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0) {
				r = -errno;
				continue;
			}
			/* A black-holed address fails after the handshake's bound, not TCP's minutes. */
			set_timeouts(fd, HANDSHAKE_TIMEOUT_S);
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				family = ai->ai_family;
				r = 0;
				break;
			}
			r = errno == EINPROGRESS ? -ETIMEDOUT : -errno;
			closep(&fd);
			fd = -EBADF;
		}
		if (r < 0) {
			snprintf(err, errlen, "%s", strerror(-r));
			return r;
		}
	}
	_cleanup_(xfer_conn_freep) struct xfer_conn *c = xfer_conn_from_fd(TAKE_FD(fd), addr);
	tune_socket(c->fd, family);
	set_timeouts(c->fd, HANDSHAKE_TIMEOUT_S);
	if (tls) {
		r = tls_start(c, tls, host);
		if (r < 0) {
			snprintf(err, errlen, "%s", c->err);
			return r;
		}
	}
	set_timeouts(c->fd, 0);
	r = set_nonblock(c->fd, true);
	if (r < 0)
		return r;
	*out = TAKE_PTR(c);
	return 0;
}
