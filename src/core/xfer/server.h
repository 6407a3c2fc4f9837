/*
 * The accept loop shared by `registry` (many sessions at once) and `peer`
 * (one migration at a time): one thread per connection, every failure
 * confined to its own connection, and a clean stop on SIGINT/SIGTERM.
 */
#ifndef DRAFTER_XFER_SERVER_H
#define DRAFTER_XFER_SERVER_H

#include <stdbool.h>

#include "core/xfer/transport.h"

struct xfer_server;

struct xfer_server_opts {
	int lfd;              /* listening socket (owned by the caller) */
	struct xfer_tls *tls; /* NULL: plain */
	void *ctx;
	/*
	 * Serve one connection (TLS done, protocol handshake not yet). Runs in
	 * its own thread; returns 1 to stop the server after this session.
	 */
	int (*handle)(void *ctx, struct xfer_conn *c);
	/* A connection failed before handle (TLS handshake); ERR is the reason. */
	void (*refused)(void *ctx, const char *peer, const char *err);
	/* At most this many sessions at once; further ones wait in the backlog (0: no limit). */
	unsigned max_sessions;
};

/*
 * Block SIGINT and SIGTERM in the calling thread (before starting other
 * threads) and return a signalfd for them.
 */
int xfer_signals_block(void);

/*
 * Serve until a signal arrives on SIGFD or a handler returns 1. Returns 0,
 * or the signal number that stopped it (positive), or -errno.
 */
int xfer_serve(const struct xfer_server_opts *o, int sigfd);

#endif
