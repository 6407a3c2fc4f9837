/*
 * libFuzzer target for the destination side of a session: the input is
 * everything a hostile source sends after the hello. It runs the real
 * xfer_dest_run over a socketpair with in-memory devices (at most 1 MiB
 * each here), so the state machine (device ids, ordering, lists, digests)
 * is exercised, not only the decoders.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/xfer/migrate.h"
#include "core/xfer/transport.h"
#include "core/xfer/wire.h"

struct memdev {
	struct xfer_dev dev;
	uint8_t *data;
	char name[XFER_MAX_NAME + 1];
};

/* The harness links the transport without the configuration module; no TLS here. */
bool cfg_tls_enabled(const struct cfg_tls *tls)
{
	(void)tls;
	return false;
}

static struct memdev devs[XFER_MAX_DEVICES];
static size_t ndevs;

static int md_deliver(struct xfer_dev *d, uint64_t block, const void *data, size_t len)
{
	struct memdev *m = d->ctx;
	memcpy(m->data + block * d->block_size, data, len);
	return 0;
}

static void md_present(struct xfer_dev *d, uint64_t start, uint64_t count)
{
	(void)d;
	(void)start;
	(void)count;
}

static int md_invalidate(struct xfer_dev *d, const uint64_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] >= xfer_dev_blocks(d))
			abort(); /* the engine must have checked */
	return 0;
}

static const struct xfer_dev_ops ops = {
	.deliver = md_deliver,
	.mark_present = md_present,
	.invalidate = md_invalidate,
};

static int md_open(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t bs,
		   uint32_t flags, struct xfer_dev **out, char *err, size_t errlen)
{
	(void)ctx;
	(void)id;
	(void)flags;
	if (size > (1u << 20)) {
		snprintf(err, errlen, "too large for the fuzzer");
		return -EFBIG;
	}
	struct memdev *m = &devs[ndevs++];
	m->data = calloc(1, size ? size : 1);
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->dev.ops = &ops;
	m->dev.ctx = m;
	m->dev.name = m->name;
	m->dev.size = size;
	m->dev.block_size = bs;
	*out = &m->dev;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	char err[256];
	bool auth;

	if (size > 100000)
		return 0;
	/* The seeds are whole sessions: the hello is not part of this target. */
	if (size >= XFER_HELLO_LEN && memcmp(data, XFER_MAGIC, XFER_MAGIC_LEN) == 0) {
		data += XFER_HELLO_LEN;
		size -= XFER_HELLO_LEN;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return 0;
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	size_t off = 0;
	while (off < size) {
		ssize_t n = write(sv[0], data + off, size - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	shutdown(sv[0], SHUT_WR);
	struct xfer_conn *c = xfer_conn_from_fd(sv[1], "fuzz");
	struct xfer_dest_opts o = { .open = md_open };
	int r = xfer_dest_run(c, &o, NULL, NULL, &auth, err, sizeof(err));
	if (getenv("FUZZ_DEST_VERBOSE"))
		fprintf(stderr, "session: %d %s\n", r, r < 0 ? err : "completed");
	xfer_conn_free(c);
	close(sv[0]);
	for (size_t i = 0; i < ndevs; i++)
		free(devs[i].data);
	ndevs = 0;
	return 0;
}
