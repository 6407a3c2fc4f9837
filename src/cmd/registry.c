/*
 * drafter registry: serve a package's device files, read-only, to any number
 * of peers and terminators at once. Every session sends the devices, hands
 * authority over at once (nothing will change) and streams the blocks, the
 * requested ones first. A misbehaving client only loses its own connection.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "core/xfer/filedev.h"
#include "core/xfer/migrate.h"
#include "core/xfer/server.h"
#include "core/xfer/transport.h"

struct registry {
	struct xfer_dev **devs;
	size_t n;
	uint32_t concurrency;
};

static int registry_session(void *ctx, struct xfer_conn *c)
{
	struct registry *reg = ctx;
	struct xfer_source_opts so = { .read_only = true, .concurrency = reg->concurrency };
	struct xfer_stats st = { 0 };
	char err[256], size[32];
	bool auth;
	int r;

	r = xfer_handshake(c, XFER_ROLE_SOURCE, XFER_CAP_ZSTD | XFER_CAP_READONLY);
	if (r < 0) {
		log_warn("refused '%s': %s", c->peer, c->err);
		return 0;
	}
	r = xfer_source_run(c, reg->devs, reg->n, &so, NULL, &st, &auth, err, sizeof(err));
	if (r < 0) {
		log_warn("session with '%s' failed: %s", c->peer, err);
		return 0;
	}
	format_bytes(st.bytes_data, size, sizeof(size));
	log_info("served %zu devices (%s) to '%s' in %.2fs, %" PRIu64 " requested blocks first",
		 reg->n, size, c->peer, (double)(st.end_ns - st.start_ns) / 1e9, st.blocks_priority);
	return 0;
}

static void registry_refused(void *ctx, const char *peer, const char *err)
{
	(void)ctx;
	log_warn("refused '%s': %s", peer, err);
}

int cmd_registry(int argc, char **argv)
{
	struct config cfg;
	struct registry reg = { 0 };
	struct xfer_tls *tls = NULL;
	char err[512];
	int r, ret = 1, lfd = -1, sigfd = -1;

	r = config_setup(&cfg, TOOL_REGISTRY, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	xfer_transport_init();
	xfer_transport_set_timeout(cfg.transport.timeout_ns);

	reg.devs = xcalloc(cfg.n_devices ? cfg.n_devices : 1, sizeof(*reg.devs));
	reg.concurrency = cfg.transport.concurrency;
	for (size_t i = 0; i < cfg.n_devices; i++) {
		const struct cfg_device *d = &cfg.devices[i];
		const char *path = !str_empty(d->input) ? d->input : d->path;
		uint32_t bs = d->block_size ? d->block_size : 65536;

		if (str_empty(path)) {
			log_error("cannot serve device '%s': no input file", d->name);
			goto out;
		}
		r = xfer_filedev_open_input(path, d->name, bs, &reg.devs[reg.n]);
		if (r == -ENOENT) {
			/* The default list names every known device; packages often lack some. */
			log_warn("not serving device '%s': '%s' does not exist", d->name, path);
			continue;
		}
		if (r < 0) {
			log_error_errno(r, "cannot open device '%s' at '%s': %m", d->name, path);
			goto out;
		}
		reg.n++;
	}
	if (reg.n == 0) {
		log_error("cannot serve: none of the devices exists");
		goto out;
	}

	r = xfer_tls_new(&cfg.transport.tls, true, &tls, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		goto out;
	}
	sigfd = xfer_signals_block();
	if (sigfd < 0) {
		log_error_errno(sigfd, "cannot set up signal handling: %m");
		goto out;
	}
	r = xfer_listen(cfg.transport.laddr, &lfd, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		goto out;
	}
	log_info("serving %zu devices on '%s'%s", reg.n, cfg.transport.laddr, tls ? " (TLS)" : "");

	struct xfer_server_opts so = {
		.lfd = lfd,
		.tls = tls,
		.ctx = &reg,
		.handle = registry_session,
		.refused = registry_refused,
	};
	r = xfer_serve(&so, sigfd);
	if (r < 0) {
		log_error_errno(r, "cannot serve on '%s': %m", cfg.transport.laddr);
		goto out;
	}
	ret = 0;
out:
	if (lfd >= 0) {
		close(lfd);
		if (str_startswith(cfg.transport.laddr, "unix:"))
			(void)unlink(cfg.transport.laddr + 5);
	}
	if (sigfd >= 0)
		close(sigfd);
	for (size_t i = 0; i < reg.n; i++)
		xfer_filedev_free(reg.devs[i]);
	free(reg.devs);
	xfer_tls_free(tls);
	config_free(&cfg);
	return ret;
}
