/*
 * Transports for migrations: TCP (IPv4/IPv6), UNIX sockets and TLS 1.3 over
 * TCP, behind one connection type with a small vtable, plus the protocol
 * handshake. Readers and writers may run in different threads on one
 * connection; whole frames are written under a lock so they never interleave.
 * After the handshake a small thread per connection sends KEEPALIVE whenever
 * the connection has been silent for a while, and every wait for the peer is
 * bounded by the receive timeout (transport.timeout), so a stalled peer ends
 * the session with one clear error instead of a hang.
 */
#ifndef DRAFTER_XFER_TRANSPORT_H
#define DRAFTER_XFER_TRANSPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/config.h"
#include "core/xfer/wire.h"

struct xfer_conn;

struct xfer_conn_ops {
	const char *name;
	/* Non-blocking: bytes moved, -EAGAIN (want poll on *events), 0 on EOF (read), -errno. */
	ssize_t (*read)(struct xfer_conn *c, void *buf, size_t len, short *events);
	ssize_t (*write)(struct xfer_conn *c, const void *buf, size_t len, short *events);
	void (*close)(struct xfer_conn *c);
};

struct xfer_keepalive;

/* peer_idle_ms before the peer's first KEEPALIVE arrived. */
#define XFER_IDLE_UNKNOWN UINT32_MAX

struct xfer_conn {
	const struct xfer_conn_ops *ops;
	int fd;
	void *ssl; /* SSL * for TLS */
	pthread_mutex_t ssl_lock; /* OpenSSL objects are not safe for concurrent read and write */
	pthread_mutex_t write_lock;
	char peer[128];   /* "127.0.0.1:1337", "unix:/run/x.sock" */
	char err[256];    /* the reason of the last transport failure, for the user */
	pthread_mutex_t err_lock; /* err is written by the reading and the writing thread */
	bool eof;
	int timeout_ms; /* bound on each wait for the peer; 0: none */
	uint32_t idle_ms;      /* receive timeout after the handshake (announced); 0: none */
	uint32_t peer_idle_ms; /* the peer's receive timeout, from its KEEPALIVE */
	uint64_t last_out_ns;  /* monotonic time of the last bytes written (atomic) */
	struct xfer_keepalive *ka; /* the keepalive sender, once the handshake is through */
	uint8_t *rbuf;  /* read buffer (one reader thread at a time) */
	size_t rpos, rlen;
	uint8_t *wbuf;  /* TLS: a frame is assembled here (under write_lock) */
	struct xfer_hello hello; /* the peer's hello */
	uint64_t bytes_in, bytes_out;
};

/* A TLS context for one role; NULL pointers mean plain transport. */
struct xfer_tls;

/* Process-wide set-up (SIGPIPE ignored: a vanished peer is a return value). */
void xfer_transport_init(void);

/*
 * Receive timeout (transport.timeout) of the connections made from now on:
 * nothing at all from the peer for this long, or no data taken by it, fails
 * the session. 0: wait forever. Defaults to 30 s; rounded to milliseconds and
 * clamped to what the protocol can announce.
 */
void xfer_transport_set_timeout(uint64_t timeout_ns);

/*
 * Build a TLS context from the settings; returns -EINVAL etc. with ERR filled
 * ("cannot load certificate 'x.pem': ..."). *OUT stays NULL when TLS is off.
 */
int xfer_tls_new(const struct cfg_tls *cfg, bool server, struct xfer_tls **out, char *err,
		 size_t errlen);
void xfer_tls_free(struct xfer_tls *t);

/*
 * Listen on ADDR ("host:port", "[::1]:port", ":port", "unix:PATH"). A stale
 * UNIX socket file is replaced. ERR explains failures.
 */
int xfer_listen(const char *addr, int *fd, char *err, size_t errlen);
/* Accept one connection and run the TLS server handshake if TLS is given. */
int xfer_accept(int lfd, struct xfer_tls *tls, struct xfer_conn **out, char *err, size_t errlen);
/* The two halves of xfer_accept, so a server can run handshakes in its session threads. */
int xfer_accept_fd(int lfd, int *fd, char *peer, size_t peerlen);
/* Takes FD (closed on failure). */
int xfer_conn_accepted(int fd, const char *peer, struct xfer_tls *tls, struct xfer_conn **out,
		       char *err, size_t errlen);
/* Connect to ADDR (and run the TLS client handshake). */
int xfer_dial(const char *addr, struct xfer_tls *tls, struct xfer_conn **out, char *err,
	      size_t errlen);
/* Wrap a connected socket (tests, socketpair). Takes FD. */
struct xfer_conn *xfer_conn_from_fd(int fd, const char *peer);

/* Stops the keepalive sender first. */
void xfer_conn_free(struct xfer_conn *c);
/* Wake and fail every blocked reader and writer of C (connection lost / aborted). */
void xfer_conn_shutdown(struct xfer_conn *c);

/* Read exactly LEN bytes: 0, 1 when the peer closed before the first byte, -errno. */
int xfer_conn_read_full(struct xfer_conn *c, void *buf, size_t len);
/* Write all of IOV as one unit with respect to other writers. */
int xfer_conn_writev(struct xfer_conn *c, const struct iovec *iov, int n);

/* Send one frame: header + payload. */
int xfer_send(struct xfer_conn *c, uint8_t type, uint8_t flags, uint16_t dev, uint32_t txid,
	      const void *payload, size_t len);
/*
 * Receive one frame into *BUF (grown up to XFER_MAX_PAYLOAD as needed, only
 * after the header passed its checks) and decode it into M. 1 on clean EOF.
 * KEEPALIVE frames are consumed here and never returned.
 */
int xfer_recv(struct xfer_conn *c, uint8_t **buf, size_t *cap, struct xfer_msg *m);

/*
 * Exchange hellos (both sides send first, then read, so that a version
 * mismatch is reported on both ends). -EPROTONOSUPPORT on another version,
 * -EPROTO when the peer does not speak the protocol; c->err says which.
 * CAPS gets XFER_CAP_KEEPALIVE added. When the peer announced it too, the
 * receive timeout applies from here on and the keepalive sender starts.
 */
int xfer_handshake(struct xfer_conn *c, enum xfer_role role, uint32_t caps);

/* Send ABORT with a reason; errors are ignored (the connection may be gone). */
void xfer_send_abort(struct xfer_conn *c, uint16_t code, const char *reason);

/* Split "host:port" or "[v6]:port"; HOST empty for ":port". */
int xfer_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

#endif
