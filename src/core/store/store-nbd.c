/*
 * Kernel NBD exposure: each device becomes /dev/nbdN, configured through
 * the nbd generic netlink family (libnl-genl) with one end of each of a few
 * socketpairs; drafter serves the NBD transmission phase (simple replies)
 * on the other ends, one thread per connection. The request server is also
 * used on its own (store_nbd_serve), which is what the tests exercise where
 * the kernel has no nbd module.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/fs.h>
#include <unistd.h>

#include <linux/nbd-netlink.h>
#include <linux/nbd.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>

#include "core/io.h"
#include "core/nlerr.h"
#include "core/store/store-expose-internal.h"
#include "core/util.h"

#define NBD_CONNS        4
#define NBD_KERNEL_BLOCK 4096u

/* NBD's error numbers are fixed by the protocol, not the host's errno. */
static uint32_t nbd_error(int err)
{
	switch (-err) {
	case EPERM:
	case EROFS:
		return 1;
	case ENOMEM:
		return 12;
	case EINVAL:
	case ERANGE:
		return 22;
	case ENOSPC:
	case EFBIG:
		return 28;
	case EOVERFLOW:
		return 75;
	case EOPNOTSUPP:
		return 95;
	default:
		return 5; /* EIO */
	}
}

/* All LEN bytes of a message: -ECONNRESET when the peer hung up before it, -EPROTO inside it. */
static int read_msg(int fd, void *buf, size_t len)
{
	ssize_t n = read_full(fd, buf, len);

	if (n < 0)
		return (int)n;
	if ((size_t)n < len)
		return n ? -EPROTO : -ECONNRESET;
	return 0;
}

static int reply(int fd, uint32_t err, const unsigned char handle[8], const void *data, size_t len)
{
	unsigned char hdr[16];
	uint32_t u32 = htobe32(NBD_REPLY_MAGIC);

	memcpy(hdr, &u32, 4);
	u32 = htobe32(err);
	memcpy(hdr + 4, &u32, 4);
	memcpy(hdr + 8, handle, 8);
	int r = send_all(fd, hdr, sizeof(hdr));
	if (r == 0 && !err && len)
		r = send_all(fd, data, len);
	return r;
}

/* Read and drop LEN payload bytes, to stay in step after refusing a write. */
static int discard(int fd, uint64_t len)
{
	char buf[16384];

	while (len) {
		size_t n = len > sizeof(buf) ? sizeof(buf) : (size_t)len;
		int r = read_msg(fd, buf, n);
		if (r < 0)
			return r == -ECONNRESET ? -EPROTO : r;
		len -= n;
	}
	return 0;
}

/*
 * Reads and writes run on a few worker threads, so a read that waits for a
 * block still in flight (destination) does not hold up the requests behind
 * it; replies go out in completion order, matched by handle. The reader
 * stops taking requests while too many bytes are in flight.
 */
#define NBD_WORKERS        4
#define NBD_INFLIGHT_BYTES (64u * 1024u * 1024u)

struct nbd_req {
	struct nbd_req *next;
	uint16_t cmd;
	uint64_t off;
	uint32_t len;
	unsigned char handle[8];
	char *buf;
};

struct nbd_srv {
	int fd;
	struct store_device *d;
	pthread_mutex_t lock;
	pthread_cond_t work; /* a request was queued, or stop */
	pthread_cond_t room; /* a request finished */
	struct nbd_req *head, *tail;
	size_t inflight_bytes;
	unsigned inflight;
	bool stop;
	int err; /* first failure to send a reply */
	pthread_mutex_t send_lock;
};

static int srv_reply(struct nbd_srv *s, uint32_t err, const unsigned char handle[8],
                     const void *data, size_t len)
{
	pthread_mutex_lock(&s->send_lock);
	int r = reply(s->fd, err, handle, data, len);
	pthread_mutex_unlock(&s->send_lock);
	return r;
}

static void *srv_worker(void *arg)
{
	struct nbd_srv *s = arg;

	thread_name("nbd-worker");
	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (!s->head && !s->stop)
			pthread_cond_wait(&s->work, &s->lock);
		struct nbd_req *q = s->head;
		if (!q)
			break; /* stop, and nothing left to do */
		s->head = q->next;
		if (!s->head)
			s->tail = NULL;
		pthread_mutex_unlock(&s->lock);

		ssize_t n = q->cmd == NBD_CMD_READ
		                ? store_device_read(s->d, q->buf, q->len, q->off)
		                : store_device_write(s->d, q->buf, q->len, q->off);
		uint32_t err = n < 0 ? nbd_error((int)n) : (size_t)n != q->len ? 5 : 0;
		int r = srv_reply(s, err, q->handle, q->buf, q->cmd == NBD_CMD_READ ? q->len : 0);

		pthread_mutex_lock(&s->lock);
		if (r < 0 && !s->err)
			s->err = r;
		s->inflight--;
		s->inflight_bytes -= q->len;
		pthread_cond_broadcast(&s->room);
		free(q->buf);
		free(q);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* Wait until LEN more bytes fit (one request always fits), then count them. */
static void srv_reserve(struct nbd_srv *s, uint32_t len)
{
	pthread_mutex_lock(&s->lock);
	while (s->inflight && s->inflight_bytes + len > NBD_INFLIGHT_BYTES)
		pthread_cond_wait(&s->room, &s->lock);
	s->inflight++;
	s->inflight_bytes += len;
	pthread_mutex_unlock(&s->lock);
}

static void srv_unreserve(struct nbd_srv *s, uint32_t len)
{
	pthread_mutex_lock(&s->lock);
	s->inflight--;
	s->inflight_bytes -= len;
	pthread_cond_broadcast(&s->room);
	pthread_mutex_unlock(&s->lock);
}

static void srv_queue(struct nbd_srv *s, struct nbd_req *q)
{
	pthread_mutex_lock(&s->lock);
	if (s->tail)
		s->tail->next = q;
	else
		s->head = q;
	s->tail = q;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->lock);
}

/* Reads requests until DISC, end of stream or a protocol error. */
static int srv_read_loop(struct nbd_srv *s)
{
	uint64_t size = store_device_size(s->d);

	for (;;) {
		unsigned char hdr[28];
		uint32_t magic, type, len;
		uint64_t off;
		int r = read_msg(s->fd, hdr, sizeof(hdr));
		if (r == -ECONNRESET)
			return 0; /* the client went away between requests */
		if (r < 0)
			return r;
		memcpy(&magic, hdr, 4);
		memcpy(&type, hdr + 4, 4);
		memcpy(&off, hdr + 16, 8);
		memcpy(&len, hdr + 24, 4);
		magic = be32toh(magic);
		type = be32toh(type);
		off = be64toh(off);
		len = be32toh(len);
		const unsigned char *handle = hdr + 8;
		uint16_t cmd = (uint16_t)(type & 0xffff);

		if (magic != NBD_REQUEST_MAGIC)
			return -EPROTO; /* out of step: nothing after this can be trusted */

		bool in_range = off <= size && len <= size - off;
		switch (cmd) {
		case NBD_CMD_READ:
		case NBD_CMD_WRITE: {
			if (len > STORE_NBD_MAX_REQUEST || !in_range) {
				if (cmd == NBD_CMD_WRITE && (r = discard(s->fd, len)) < 0)
					return r;
				r = srv_reply(s, len > STORE_NBD_MAX_REQUEST ? 75 : 22, handle,
				              NULL, 0);
				break;
			}
			srv_reserve(s, len);
			struct nbd_req *q = calloc(1, sizeof(*q));
			char *buf = malloc(len ? len : 1);
			if (!q || !buf) {
				free(q);
				free(buf);
				srv_unreserve(s, len);
				if (cmd == NBD_CMD_WRITE && (r = discard(s->fd, len)) < 0)
					return r;
				r = srv_reply(s, 12, handle, NULL, 0);
				break;
			}
			if (cmd == NBD_CMD_WRITE) {
				r = read_msg(s->fd, buf, len);
				if (r < 0) {
					free(q);
					free(buf);
					srv_unreserve(s, len);
					return r == -ECONNRESET ? -EPROTO : r;
				}
			}
			q->cmd = cmd;
			q->off = off;
			q->len = len;
			q->buf = buf;
			memcpy(q->handle, handle, 8);
			srv_queue(s, q);
			r = 0;
			break;
		}
		case NBD_CMD_DISC:
			return 0;
		case NBD_CMD_FLUSH: {
			/* covers every write already answered, as the protocol asks */
			int f = store_device_flush(s->d);
			r = srv_reply(s, f < 0 ? nbd_error(f) : 0, handle, NULL, 0);
			break;
		}
		case NBD_CMD_TRIM:
			/* advisory: the blocks keep their contents */
			r = srv_reply(s, in_range ? 0 : 22, handle, NULL, 0);
			break;
		default:
			r = srv_reply(s, 22, handle, NULL, 0);
			break;
		}
		if (r < 0)
			return r;
	}
}

int store_nbd_serve(int fd, struct store_device *d)
{
	struct nbd_srv s = {.fd = fd, .d = d};
	pthread_t workers[NBD_WORKERS];
	size_t started = 0;
	int r;

	pthread_mutex_init(&s.lock, NULL);
	pthread_mutex_init(&s.send_lock, NULL);
	pthread_cond_init(&s.work, NULL);
	pthread_cond_init(&s.room, NULL);
	for (; started < NBD_WORKERS; started++)
		if (pthread_create(&workers[started], NULL, srv_worker, &s) != 0)
			break;
	r = started ? srv_read_loop(&s) : -EAGAIN;

	/* answer what was accepted, then stop */
	pthread_mutex_lock(&s.lock);
	s.stop = true;
	pthread_cond_broadcast(&s.work);
	pthread_mutex_unlock(&s.lock);
	for (size_t i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	if (r == 0 && s.err && s.err != -EPIPE && s.err != -ECONNRESET)
		r = s.err;
	pthread_mutex_destroy(&s.lock);
	pthread_mutex_destroy(&s.send_lock);
	pthread_cond_destroy(&s.work);
	pthread_cond_destroy(&s.room);
	return r;
}

/* ------------------------------------------------------- kernel side */

bool store_nbd_available(void)
{
	struct stat st;

	return stat("/sys/module/nbd", &st) == 0;
}

struct nbd_conn {
	pthread_t thread;
	bool started;
	int fd; /* our end */
	struct store_device *dev;
};

struct nbd_dev {
	int index; /* -1: not connected */
	struct nbd_conn conns[NBD_CONNS];
};

struct nbd_state {
	struct nl_sock *sk;
	int family;
	struct nbd_dev *devs;
};

static void *conn_thread(void *arg)
{
	struct nbd_conn *c = arg;

	thread_name("nbd-conn");
	(void)store_nbd_serve(c->fd, c->dev);
	return NULL;
}

static int parse_index(struct nl_msg *msg, void *arg)
{
	struct nlattr *attrs[NBD_ATTR_MAX + 1];
	struct genlmsghdr *gh = nlmsg_data(nlmsg_hdr(msg));

	if (nla_parse(attrs, NBD_ATTR_MAX, genlmsg_attrdata(gh, 0), genlmsg_attrlen(gh, 0), NULL) <
	    0)
		return NL_SKIP;
	if (attrs[NBD_ATTR_INDEX])
		*(int *)arg = (int)nla_get_u32(attrs[NBD_ATTR_INDEX]);
	return NL_OK;
}

static int nbd_connect_one(struct nbd_state *s, struct store_device *d, struct nbd_dev *nd)
{
	int client[NBD_CONNS];
	struct nl_msg *m = NULL;
	int r, index = -1;

	for (size_t i = 0; i < NBD_CONNS; i++)
		client[i] = -1;
	for (size_t i = 0; i < NBD_CONNS; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			r = -errno;
			goto out;
		}
		nd->conns[i].fd = sv[0];
		nd->conns[i].dev = d;
		client[i] = sv[1];
	}
	m = nlmsg_alloc();
	if (!m) {
		r = -ENOMEM;
		goto out;
	}
	uint64_t size = store_device_size(d);
	size = (size + 511) / 512 * 512;
	if (size < NBD_KERNEL_BLOCK)
		size = NBD_KERNEL_BLOCK;
	if (!genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, s->family, 0, 0, NBD_CMD_CONNECT,
	                 NBD_GENL_VERSION) ||
	    nla_put_u64(m, NBD_ATTR_SIZE_BYTES, size) < 0 ||
	    nla_put_u64(m, NBD_ATTR_BLOCK_SIZE_BYTES, NBD_KERNEL_BLOCK) < 0 ||
	    nla_put_u64(m, NBD_ATTR_SERVER_FLAGS,
	                NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM |
	                    NBD_FLAG_CAN_MULTI_CONN) < 0 ||
	    /* no kernel timeouts: a read waits for the waiting cache, which fails itself */
	    nla_put_u64(m, NBD_ATTR_TIMEOUT, 0) < 0 ||
	    nla_put_u64(m, NBD_ATTR_DEAD_CONN_TIMEOUT, 0) < 0 ||
	    /* the device goes away with our disconnect */
	    nla_put_u64(m, NBD_ATTR_CLIENT_FLAGS, NBD_CFLAG_DESTROY_ON_DISCONNECT) < 0) {
		r = -ENOMEM;
		goto out;
	}
	struct nlattr *socks = nla_nest_start(m, NBD_ATTR_SOCKETS);
	if (!socks) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < NBD_CONNS; i++) {
		struct nlattr *item = nla_nest_start(m, NBD_SOCK_ITEM);
		if (!item || nla_put_u32(m, NBD_SOCK_FD, (uint32_t)client[i]) < 0) {
			r = -ENOMEM;
			goto out;
		}
		nla_nest_end(m, item);
	}
	nla_nest_end(m, socks);
	nl_socket_modify_cb(s->sk, NL_CB_VALID, NL_CB_CUSTOM, parse_index, &index);
	r = nl_send_auto(s->sk, m);
	if (r >= 0)
		r = nl_wait_for_ack(s->sk);
	if (r < 0) {
		r = nlerr_to_errno(r);
		goto out;
	}
	if (index < 0) {
		r = -EIO;
		goto out;
	}
	nd->index = index;
	for (size_t i = 0; i < NBD_CONNS; i++) {
		if (pthread_create(&nd->conns[i].thread, NULL, conn_thread, &nd->conns[i]) != 0) {
			r = -EAGAIN;
			goto out;
		}
		nd->conns[i].started = true;
	}
	r = 0;
out:
	/* the kernel holds its own references to the client ends */
	for (size_t i = 0; i < NBD_CONNS; i++)
		if (client[i] >= 0)
			close(client[i]);
	nlmsg_free(m);
	return r;
}

static void nbd_disconnect_one(struct nbd_state *s, struct nbd_dev *nd)
{
	if (nd->index >= 0 && s->sk) {
		struct nl_msg *m = nlmsg_alloc();
		if (m &&
		    genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, s->family, 0, 0, NBD_CMD_DISCONNECT,
		                NBD_GENL_VERSION) &&
		    nla_put_u32(m, NBD_ATTR_INDEX, (uint32_t)nd->index) >= 0 &&
		    nl_send_auto(s->sk, m) >= 0)
			(void)nl_wait_for_ack(s->sk);
		nlmsg_free(m);
		nd->index = -1;
	}
	for (size_t i = 0; i < NBD_CONNS; i++) {
		if (nd->conns[i].fd >= 0)
			shutdown(nd->conns[i].fd, SHUT_RDWR);
		if (nd->conns[i].started)
			pthread_join(nd->conns[i].thread, NULL);
		nd->conns[i].started = false;
		if (nd->conns[i].fd >= 0)
			close(nd->conns[i].fd);
		nd->conns[i].fd = -1;
	}
}

static void nbd_stop(struct store_expose *e)
{
	struct nbd_state *s = e->priv;

	if (!s)
		return;
	for (size_t i = 0; i < e->n; i++) {
		store_device_set_changed(e->devs[i], NULL, NULL);
		/* a server thread waiting for a block that will not come would block the join */
		if (store_device_wait(e->devs[i]))
			store_wait_fail(store_device_wait(e->devs[i]), -EIO);
	}
	for (size_t i = 0; s->devs && i < e->n; i++)
		nbd_disconnect_one(s, &s->devs[i]);
	if (s->sk)
		nl_socket_free(s->sk);
	free(s->devs);
	free(s);
	e->priv = NULL;
}

/* Drop the page cache of device I's block device. */
static void nbd_drop(struct store_expose *e, size_t i)
{
	if (!e->paths[i])
		return;
	_cleanup_close_ int fd = open(e->paths[i], O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		(void)ioctl(fd, BLKFLSBUF, 0);
}

/*
 * Content changed underneath (a dirty list): drop the block device's page
 * cache, at once even when LATER allows a delay: BLKFLSBUF skips pages that
 * are locked for a read instead of waiting for them.
 */
static void nbd_changed(void *ctx, struct store_device *dev, uint64_t off, uint64_t len, bool later)
{
	struct store_expose *e = ctx;

	(void)off;
	(void)len;
	(void)later;
	for (size_t i = 0; i < e->n; i++)
		if (e->devs[i] == dev)
			nbd_drop(e, i);
}

/*
 * Before a VM loads: a read under way when a dirty list came kept its
 * pages (locked, so BLKFLSBUF skipped them), maybe filled with the old
 * version. Drop the destination devices' caches once more.
 */
static void nbd_settle(struct store_expose *e)
{
	for (size_t i = 0; i < e->n; i++)
		if (store_device_wait(e->devs[i]))
			nbd_drop(e, i);
}

static int nbd_start(struct store_expose *e)
{
	struct nbd_state *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return -ENOMEM;
	e->priv = s;
	s->devs = calloc(e->n ? e->n : 1, sizeof(*s->devs));
	if (!s->devs)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++) {
		s->devs[i].index = -1;
		for (size_t j = 0; j < NBD_CONNS; j++)
			s->devs[i].conns[j].fd = -1;
	}
	s->sk = nl_socket_alloc();
	if (!s->sk)
		return -ENOMEM;
	r = genl_connect(s->sk);
	if (r < 0)
		return nlerr_to_errno(r);
	s->family = genl_ctrl_resolve(s->sk, NBD_GENL_FAMILY_NAME);
	if (s->family < 0)
		return -ENODEV; /* the nbd module is not loaded */
	for (size_t i = 0; i < e->n; i++) {
		r = nbd_connect_one(s, e->devs[i], &s->devs[i]);
		if (r < 0)
			return r;
		if (asprintf(&e->paths[i], "/dev/nbd%d", s->devs[i].index) < 0) {
			e->paths[i] = NULL;
			return -ENOMEM;
		}
		store_device_set_changed(e->devs[i], nbd_changed, e);
	}
	return 0;
}

const struct store_expose_ops store_expose_nbd_ops = {
	.name = "nbd",
	.start = nbd_start,
	.flush = store_expose_path_flush,
	.stop = nbd_stop,
	.settle = nbd_settle,
};
