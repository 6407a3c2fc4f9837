/*
 * drafter terminate: pull every device from a registry or a running peer
 * into its output file. Blocks are checked against their checksums and each
 * device against the source's digest; the files are written under temporary
 * names and renamed only when the whole transfer succeeded.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/util.h"
#include "core/xfer/filedev.h"
#include "core/xfer/migrate.h"
#include "core/xfer/transport.h"

struct terminate {
	const struct config *cfg;
	struct xfer_dev *devs[XFER_MAX_DEVICES];
	size_t n;
	uint64_t total;
	struct progress progress;
};

static int term_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t block_size,
		     uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	struct terminate *t = ctx;
	const struct cfg_device *d = config_find_device(t->cfg, name);
	const char *path;
	int r;

	(void)id;
	(void)flags;
	if (!d) {
		snprintf(err, errlen, "the source offers device '%s', which has no output here", name);
		return -ENOENT;
	}
	path = !str_empty(d->output) ? d->output : d->path;
	if (str_empty(path)) {
		snprintf(err, errlen, "device '%s' has no output file", name);
		return -EINVAL;
	}
	r = xfer_filedev_open_output(path, name, size, block_size, out);
	if (r < 0) {
		snprintf(err, errlen, "cannot create '%s': %s", path, strerror(-r));
		return r;
	}
	t->devs[t->n++] = *out;
	t->total += size;
	return 0;
}

static int term_ready(void *ctx)
{
	struct terminate *t = ctx;

	progress_set_total(&t->progress, t->total);
	return 0;
}

static void term_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct terminate *t = ctx;

	(void)total;
	progress_set(&t->progress, done);
}

/* SIGINT/SIGTERM break the connection; the failure path then removes the temporary files. */
static volatile sig_atomic_t conn_fd = -1;

static void on_signal(int sig)
{
	(void)sig;
	if (conn_fd >= 0)
		(void)shutdown(conn_fd, SHUT_RDWR);
}

int cmd_terminate(int argc, char **argv)
{
	struct config cfg;
	struct terminate t = { .cfg = &cfg };
	struct xfer_tls *tls = NULL;
	struct xfer_conn *c = NULL;
	struct xfer_stats st = { 0 };
	char err[512], size[32];
	bool auth;
	int r, ret = 1;

	r = config_setup(&cfg, TOOL_TERMINATE, argc, argv);
	if (r != 0) {
		config_free(&cfg);
		return r > 0 ? 0 : 1;
	}
	xfer_transport_init();
	xfer_transport_set_timeout(cfg.transport.timeout_ns);

	r = xfer_tls_new(&cfg.transport.tls, false, &tls, err, sizeof(err));
	if (r < 0) {
		log_error("%s", err);
		goto out;
	}
	r = xfer_dial(cfg.transport.raddr, tls, &c, err, sizeof(err));
	if (r < 0) {
		log_error("cannot connect to '%s': %s", cfg.transport.raddr, err);
		goto out;
	}
	r = xfer_handshake(c, XFER_ROLE_DEST, XFER_CAP_ZSTD);
	if (r < 0) {
		log_error("cannot pull from '%s': %s", cfg.transport.raddr, c->err);
		goto out;
	}
	conn_fd = c->fd;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	progress_init(&t.progress, "pulling", 0);
	struct xfer_dest_opts o = { .ctx = &t, .open = term_open, .ready = term_ready };
	struct xfer_hooks h = { .ctx = &t, .progress = term_progress };
	r = xfer_dest_run(c, &o, &h, &st, &auth, err, sizeof(err));
	progress_end(&t.progress);
	conn_fd = -1;
	if (r < 0) {
		log_error("cannot pull from '%s': %s", cfg.transport.raddr, err);
		goto out;
	}
	for (size_t i = 0; i < t.n; i++) {
		r = xfer_filedev_commit(t.devs[i]);
		if (r < 0) {
			log_error_errno(r, "cannot write '%s': %m", xfer_filedev_path(t.devs[i]));
			goto out;
		}
	}
	for (size_t i = 0; i < cfg.n_devices; i++) {
		bool got = false;
		for (size_t k = 0; k < t.n; k++)
			got |= str_eq(t.devs[k]->name, cfg.devices[i].name);
		if (!got)
			log_warn("the source did not offer device '%s'", cfg.devices[i].name);
	}
	format_bytes(st.bytes_data, size, sizeof(size));
	double secs = (double)(st.end_ns - st.start_ns) / 1e9;
	char rate[32];
	format_bytes(secs > 0 ? (uint64_t)((double)st.bytes_data / secs) : 0, rate, sizeof(rate));
	log_info("pulled %zu devices (%s) from '%s' in %.2fs (%s/s): %" PRIu64 " raw, %" PRIu64
		 " zero, %" PRIu64 " compressed blocks, all checksums verified",
		 t.n, size, cfg.transport.raddr, secs, rate, st.blocks_raw, st.blocks_zero,
		 st.blocks_zstd);
	ret = 0;
out:
	for (size_t i = 0; i < t.n; i++)
		xfer_filedev_free(t.devs[i]);
	xfer_conn_free(c);
	xfer_tls_free(tls);
	config_free(&cfg);
	return ret;
}
