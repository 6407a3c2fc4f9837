/*
 * drafter peer, devices only (no VM yet): get the devices from local files
 * (--raddr '') or from a registry or another peer (--raddr), expose them so
 * that any process can use them, and with --laddr wait for a destination and
 * migrate them away. The VM layer will plug into the same flow through
 * struct xfer_hooks (pause/flush/save on suspend, resume after authority).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/store/store.h"
#include "core/util.h"
#include "core/xfer/migrate.h"
#include "core/xfer/server.h"
#include "core/xfer/storedev.h"
#include "core/xfer/transport.h"

struct peer {
	struct config *cfg;
	struct xfer_storedev *devs[XFER_MAX_DEVICES];
	size_t n;
	struct store_expose *expose;
	bool shared_caps; /* some device keeps a copy-on-write overlay over a shared base */
	bool handed_over;
	bool failed_after_handover;
	int sigfd;
	/* the signal watcher during an incoming migration */
	struct xfer_conn *in_conn;
	int stop_efd;
	bool interrupted;
};

static int peer_expose(struct peer *p)
{
	struct store_device *sds[XFER_MAX_DEVICES];
	struct store_expose_opts o = {
		.kind = store_expose_kind_from_cfg(p->cfg->transport.exposure),
		.mount_dir = !str_empty(p->cfg->transport.mount_dir) ? p->cfg->transport.mount_dir : "out/mnt",
	};
	int r;

	for (size_t i = 0; i < p->n; i++)
		sds[i] = xfer_storedev_store(p->devs[i]);
	r = store_expose_new(&o, sds, p->n, &p->expose);
	if (r < 0)
		return r;
	for (size_t i = 0; i < p->n; i++)
		log_info("device '%s' is at '%s' (%s)", store_device_name(sds[i]),
			 store_expose_path(p->expose, i), store_expose_kind_name(p->expose));
	return 0;
}

/* ---- destination ---- */

static int dest_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t block_size,
		     uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	struct peer *p = ctx;
	const struct cfg_device *cd = config_find_device(p->cfg, name);
	bool shared;
	int r;

	if (!cd || cd->shared) {
		snprintf(err, errlen, "the source offers device '%s', which is not configured here", name);
		return -ENOENT;
	}
	shared = (flags & XFER_DEV_SHARED_BASE) && cd->shared_base && !str_empty(cd->overlay) &&
		 !str_empty(cd->state);
	r = xfer_storedev_open_dest(cd, size, block_size, shared, &p->devs[p->n]);
	if (r < 0) {
		snprintf(err, errlen, "cannot set up device '%s' at '%s': %s", name,
			 !str_empty(cd->base) ? cd->base : "?", strerror(-r));
		return r;
	}
	xfer_storedev_set_conn(p->devs[p->n], p->in_conn, id);
	*out = xfer_storedev_dev(p->devs[p->n]);
	p->n++;
	return 0;
}

static int dest_authority(void *ctx, const uint8_t *data, size_t len)
{
	struct peer *p = ctx;
	int r;

	(void)data;
	(void)len;
	for (size_t i = 0; i < p->n; i++) {
		r = xfer_storedev_commit(p->devs[i]);
		if (r < 0)
			return r;
	}
	r = peer_expose(p);
	if (r < 0)
		return r;
	log_info("took over %zu devices", p->n);
	return 0;
}

static void *signal_watch(void *arg)
{
	struct peer *p = arg;
	struct pollfd f[2] = { { .fd = p->sigfd, .events = POLLIN }, { .fd = p->stop_efd, .events = POLLIN } };

	while (poll(f, 2, -1) < 0 && errno == EINTR)
		;
	if (f[0].revents) {
		struct signalfd_siginfo si;
		(void)!read(p->sigfd, &si, sizeof(si));
		__atomic_store_n(&p->interrupted, true, __ATOMIC_RELEASE);
		xfer_conn_shutdown(p->in_conn);
	}
	return NULL;
}

static int peer_migrate_in(struct peer *p)
{
	struct config *cfg = p->cfg;
	struct xfer_tls *tls = NULL;
	struct xfer_stats st = { 0 };
	char err[512];
	bool auth = false;
	pthread_t watcher;
	int r;

	r = xfer_tls_new(&cfg->transport.tls, false, &tls, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		return r;
	}
	r = xfer_dial(cfg->transport.raddr, tls, &p->in_conn, err, sizeof(err));
	if (r < 0) {
		log_error("cannot connect to '%s': %s", cfg->transport.raddr, err);
		xfer_tls_free(tls);
		return r;
	}
	r = xfer_handshake(p->in_conn, XFER_ROLE_DEST, XFER_CAP_ZSTD | (p->shared_caps ? XFER_CAP_SHARED_BASE : 0));
	if (r < 0) {
		log_error("cannot migrate from '%s': %s", cfg->transport.raddr, p->in_conn->err);
		goto out;
	}
	p->stop_efd = eventfd(0, EFD_CLOEXEC);
	pthread_create(&watcher, NULL, signal_watch, p);
	struct xfer_dest_opts o = { .ctx = p, .open = dest_open };
	struct xfer_hooks h = { .ctx = p, .authority = dest_authority };
	r = xfer_dest_run(p->in_conn, &o, &h, &st, &auth, err, sizeof(err));
	uint64_t one = 1;
	(void)!write(p->stop_efd, &one, sizeof(one));
	pthread_join(watcher, NULL);
	close(p->stop_efd);
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_set_conn(p->devs[i], NULL, 0);
	if (__atomic_load_n(&p->interrupted, __ATOMIC_ACQUIRE) && r < 0)
		snprintf(err, sizeof(err), "interrupted");
	if (r < 0 && !auth) {
		log_error("cannot migrate from '%s': %s", cfg->transport.raddr, err);
	} else if (r < 0) {
		/* The devices are ours now, but some blocks will never come. */
		for (size_t i = 0; i < p->n; i++)
			xfer_storedev_fail(p->devs[i], -EIO);
		log_error("lost '%s' after the handover, missing blocks fail with I/O errors: %s",
			  cfg->transport.raddr, err);
		p->failed_after_handover = true;
		r = 0;
	} else {
		char size[32];
		format_bytes(st.bytes_data, size, sizeof(size));
		log_info("migrated %zu devices (%s) from '%s' in %.2fs, %" PRIu64 " blocks requested first",
			 p->n, size, cfg->transport.raddr, (double)(st.end_ns - st.start_ns) / 1e9,
			 st.blocks_priority);
	}
out:
	xfer_conn_free(p->in_conn);
	p->in_conn = NULL;
	xfer_tls_free(tls);
	return r;
}

/* ---- source ---- */

static int src_flush(void *ctx)
{
	struct peer *p = ctx;
	return p->expose ? store_expose_flush_all(p->expose) : 0;
}

static int src_suspend(void *ctx)
{
	struct peer *p = ctx;
	int r = src_flush(ctx);

	/* After this no write reaches the devices: the final dirty lists are final. */
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_PAUSED);
	for (size_t i = 0; i < p->n; i++)
		(void)store_device_flush(xfer_storedev_store(p->devs[i]));
	return r;
}

static int src_resume(void *ctx)
{
	struct peer *p = ctx;
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_OPEN);
	return 0;
}

static int src_handover(void *ctx)
{
	struct peer *p = ctx;
	p->handed_over = true;
	for (size_t i = 0; i < p->n; i++)
		xfer_storedev_gate(p->devs[i], XFER_GATE_CLOSED);
	return 0;
}

static int peer_session(void *ctx, struct xfer_conn *c)
{
	struct peer *p = ctx;
	struct xfer_dev *devs[XFER_MAX_DEVICES];
	struct xfer_source_opts so = { .concurrency = p->cfg->transport.concurrency };
	struct xfer_hooks h = { .ctx = p, .flush = src_flush, .suspend = src_suspend,
				.resume = src_resume, .handover = src_handover };
	struct xfer_stats st = { 0 };
	char err[256], size[32];
	bool auth;
	int r;

	r = xfer_handshake(c, XFER_ROLE_SOURCE, XFER_CAP_ZSTD);
	if (r < 0) {
		log_warn("refused '%s': %s", c->peer, c->err);
		return 0;
	}
	for (size_t i = 0; i < p->n; i++) {
		xfer_storedev_begin(p->devs[i]);
		devs[i] = xfer_storedev_dev(p->devs[i]);
	}
	log_info("migrating %zu devices to '%s'", p->n, c->peer);
	r = xfer_source_run(c, devs, p->n, &so, &h, &st, &auth, err, sizeof(err));
	if (r < 0 && !auth) {
		log_warn("migration to '%s' failed, the devices stay here and writable: %s", c->peer, err);
		return 0;
	}
	if (r < 0) {
		log_error("migration to '%s' failed after the handover: %s", c->peer, err);
		p->failed_after_handover = true;
		return 1;
	}
	format_bytes(st.bytes_data, size, sizeof(size));
	log_info("migrated %zu devices (%s in %" PRIu64 " blocks, %" PRIu64
		 " blocks already there) to '%s' in %.2fs: %u dirty cycles, %" PRIu64
		 " blocks dirty at the suspend, handover after %.0fms of suspension",
		 p->n, size, st.blocks_raw + st.blocks_zero + st.blocks_zstd, st.blocks_have, c->peer,
		 (double)(st.end_ns - st.start_ns) / 1e9, st.cycles, st.final_dirty,
		 (double)(st.authority_ns - st.suspend_ns) / 1e6);
	return 1;
}

static void peer_refused(void *ctx, const char *peer, const char *err)
{
	(void)ctx;
	log_warn("refused '%s': %s", peer, err);
}

static int peer_wait_signal(int sigfd)
{
	struct pollfd f = { .fd = sigfd, .events = POLLIN };
	struct signalfd_siginfo si;

	while (poll(&f, 1, -1) < 0 && errno == EINTR)
		;
	return read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

int cmd_peer(int argc, char **argv)
{
	struct config cfg;
	struct peer p = { .cfg = &cfg, .sigfd = -1 };
	struct xfer_tls *tls = NULL;
	char err[512];
	int r, ret = 1, lfd = -1;

	r = config_setup(&cfg, TOOL_PEER, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	xfer_transport_init();
	p.sigfd = xfer_signals_block();
	if (p.sigfd < 0) {
		log_error_errno(p.sigfd, "cannot set up signal handling: %m");
		goto out;
	}
	for (size_t i = 0; i < cfg.n_devices; i++) {
		if (cfg.devices[i].shared)
			log_warn("device '%s' is shared: it is never migrated and needs a VM to be used",
				 cfg.devices[i].name);
		else if (cfg.devices[i].shared_base && !str_empty(cfg.devices[i].overlay))
			p.shared_caps = true;
	}

	if (!str_empty(cfg.transport.laddr)) {
		/* Listen early so a bad address fails before anything moves. */
		r = xfer_tls_new(&cfg.transport.tls, true, &tls, err, sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			goto out;
		}
		r = xfer_listen(cfg.transport.laddr, &lfd, err, sizeof(err));
		if (r < 0) {
			log_error("%s", err);
			goto out;
		}
	}

	if (!str_empty(cfg.transport.raddr)) {
		r = peer_migrate_in(&p);
		if (r < 0)
			goto out;
	} else {
		for (size_t i = 0; i < cfg.n_devices; i++) {
			const struct cfg_device *cd = &cfg.devices[i];
			if (cd->shared)
				continue;
			r = xfer_storedev_open_local(cd, &p.devs[p.n]);
			if (r < 0) {
				log_error_errno(r, "cannot open device '%s' from '%s': %m", cd->name,
						!str_empty(cd->base) ? cd->base : cd->path ? cd->path : "");
				goto out;
			}
			p.n++;
		}
		if (p.n == 0) {
			log_error("no devices to serve");
			goto out;
		}
		r = peer_expose(&p);
		if (r < 0) {
			log_error_errno(r, "cannot expose the devices: %m");
			goto out;
		}
	}

	if (lfd >= 0 && !p.failed_after_handover) {
		log_info("waiting for a migration on '%s'%s", cfg.transport.laddr, tls ? " (TLS)" : "");
		struct xfer_server_opts so = {
			.lfd = lfd,
			.tls = tls,
			.ctx = &p,
			.handle = peer_session,
			.refused = peer_refused,
			.max_sessions = 1,
		};
		r = xfer_serve(&so, p.sigfd);
		if (r < 0) {
			log_error_errno(r, "cannot serve on '%s': %m", cfg.transport.laddr);
			goto out;
		}
	} else {
		(void)peer_wait_signal(p.sigfd);
	}
	ret = p.failed_after_handover ? 1 : 0;
out:
	if (lfd >= 0) {
		close(lfd);
		if (str_startswith(cfg.transport.laddr, "unix:"))
			(void)unlink(cfg.transport.laddr + 5);
	}
	store_expose_free(p.expose);
	for (size_t i = 0; i < p.n; i++)
		xfer_storedev_free(p.devs[i]);
	if (p.sigfd >= 0)
		close(p.sigfd);
	xfer_tls_free(tls);
	config_free(&cfg);
	return ret;
}
