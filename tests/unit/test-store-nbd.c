/*
 * The NBD request server over a socketpair, as the kernel would talk to it:
 * reads, writes, flush, trim, disconnect, and hostile requests (bad magic,
 * out-of-range offsets, oversized lengths, unknown commands, truncated
 * headers), which must get an error reply or a dropped connection, never a
 * crash. The kernel side (netlink configuration of /dev/nbdN) is checked
 * only for its clean failure where the nbd module is missing.
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/store/store.h"
#include "tests/tap.h"

#define BS 4096u
#define NB 16u

struct server {
	pthread_t th;
	int fd;
	struct store_device *dev;
	int result;
};

static void *serve(void *p)
{
	struct server *s = p;

	s->result = store_nbd_serve(s->fd, s->dev);
	return NULL;
}

static int send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int request(int fd, uint32_t magic, uint32_t type, uint64_t handle, uint64_t off,
                   uint32_t len)
{
	unsigned char h[28];
	uint32_t u32;
	uint64_t u64;

	u32 = htobe32(magic);
	memcpy(h, &u32, 4);
	u32 = htobe32(type);
	memcpy(h + 4, &u32, 4);
	u64 = htobe64(handle);
	memcpy(h + 8, &u64, 8);
	u64 = htobe64(off);
	memcpy(h + 16, &u64, 8);
	u32 = htobe32(len);
	memcpy(h + 24, &u32, 4);
	return send_all(fd, h, sizeof(h));
}

/* Returns the error field, or -1 when the reply is missing or malformed. */
static long get_reply(int fd, uint64_t handle)
{
	unsigned char h[16];
	uint32_t magic, err;
	uint64_t got;

	if (recv_all(fd, h, sizeof(h)) < 0)
		return -1;
	memcpy(&magic, h, 4);
	memcpy(&err, h + 4, 4);
	memcpy(&got, h + 8, 8);
	if (be32toh(magic) != 0x67446698 || be64toh(got) != handle)
		return -1;
	return (long)be32toh(err);
}

static uint64_t handle_of(const unsigned char h[16])
{
	uint64_t v;

	memcpy(&v, h + 8, 8);
	return be64toh(v);
}

static void start(struct server *s, struct store_device *d, int *client)
{
	int sv[2];

	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	s->fd = sv[0];
	s->dev = d;
	s->result = 12345;
	*client = sv[1];
	pthread_create(&s->th, NULL, serve, s);
}

static void finish(struct server *s, int client)
{
	close(client);
	pthread_join(s->th, NULL);
	close(s->fd);
}

int main(void)
{
	char path[] = "/tmp/test-store-nbd.XXXXXX";
	int tmp = mkstemp(path);
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	struct server s;
	int c;
	unsigned char data[2 * BS], back[2 * BS];

	close(tmp);
	store_file_open(path, STORE_FILE_CREATE, NB * BS, &f);
	struct store_device_opts o = {.name = "disk", .block_size = BS};
	if (store_device_new(&o, f, &d) < 0) {
		ok(0, "device");
		return done_testing();
	}
	store_tracker_track_all(store_device_tracker(d));

	start(&s, d, &c);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13 + 5);
	request(c, 0x25609513, 1, 1, 3 * BS, 2 * BS);
	send_all(c, data, sizeof(data));
	is_int(get_reply(c, 1), 0, "write of two blocks succeeds");
	request(c, 0x25609513, 0, 2, 3 * BS, 2 * BS);
	ok(get_reply(c, 2) == 0 && recv_all(c, back, sizeof(back)) == 0 &&
	       !memcmp(back, data, sizeof(data)),
	   "read returns what was written");
	struct store_bitmap dirty;
	store_tracker_sync(store_device_tracker(d), &dirty);
	ok(store_bitmap_count(&dirty) == 2 && store_bitmap_test(&dirty, 3) &&
	       store_bitmap_test(&dirty, 4),
	   "NBD writes reach the dirty tracker (blocks 3, 4)");
	store_bitmap_free(&dirty);

	request(c, 0x25609513, 0, 3, NB * BS - 10, 100);
	is_int(get_reply(c, 3), 22, "read across the end: EINVAL reply");
	request(c, 0x25609513, 0, 4, UINT64_MAX - 10, 100);
	is_int(get_reply(c, 4), 22, "read at an offset that overflows: EINVAL reply");
	request(c, 0x25609513, 0, 5, 0, 0xffffffffu);
	is_int(get_reply(c, 5), 75, "read of 4 GiB: EOVERFLOW reply, nothing allocated");
	request(c, 0x25609513, 1, 6, NB * BS, 512);
	memset(back, 0x77, 512);
	send_all(c, back, 512);
	is_int(get_reply(c, 6), 22, "write beyond the end: payload skipped, EINVAL reply");
	uint32_t big = STORE_NBD_MAX_REQUEST + 1;
	char *junk = calloc(1, big);
	request(c, 0x25609513, 1, 7, 0, big);
	send_all(c, junk, big);
	free(junk);
	is_int(get_reply(c, 7), 75, "oversized write: payload skipped, EOVERFLOW reply");
	request(c, 0x25609513, 9, 8, 0, 0);
	is_int(get_reply(c, 8), 22, "unknown command: EINVAL reply");
	request(c, 0x25609513, 3, 9, 0, 0);
	is_int(get_reply(c, 9), 0, "flush succeeds");
	request(c, 0x25609513, 4, 10, 0, BS);
	is_int(get_reply(c, 10), 0, "trim succeeds");
	request(c, 0x25609513, 0, 11, 3 * BS, 16);
	ok(get_reply(c, 11) == 0 && recv_all(c, back, 16) == 0 && !memcmp(back, data, 16),
	   "the connection still works after the bad requests");
	request(c, 0x25609513, 2, 12, 0, 0);
	pthread_join(s.th, NULL);
	is_int(s.result, 0, "disconnect ends the server cleanly");
	close(c);
	close(s.fd);

	start(&s, d, &c);
	request(c, 0xdeadbeef, 0, 1, 0, 512);
	pthread_join(s.th, NULL);
	is_int(s.result, -EPROTO, "bad magic: connection dropped with EPROTO");
	close(c);
	close(s.fd);

	start(&s, d, &c);
	send_all(c, "\x25\x60\x95\x13\0\0", 6);
	shutdown(c, SHUT_WR);
	pthread_join(s.th, NULL);
	is_int(s.result, -EPROTO, "truncated header: EPROTO");
	close(c);
	close(s.fd);

	start(&s, d, &c);
	request(c, 0x25609513, 1, 1, 0, BS);
	send_all(c, data, 100);
	shutdown(c, SHUT_WR);
	pthread_join(s.th, NULL);
	is_int(s.result, -EPROTO, "truncated write payload: EPROTO");
	close(c);
	close(s.fd);

	start(&s, d, &c);
	finish(&s, c);
	is_int(s.result, 0, "peer closing between requests: clean end");
	store_device_free(d);

	/* a destination whose source is gone: reads of missing blocks get EIO */
	f = NULL;
	store_file_open(path, STORE_FILE_CREATE, NB * BS, &f);
	o.destination = true;
	store_device_new(&o, f, &d);
	store_wait_fail(store_device_wait(d), -EIO);
	start(&s, d, &c);
	request(c, 0x25609513, 0, 1, 0, BS);
	is_int(get_reply(c, 1), 5, "read of a block that will never arrive: EIO reply, no hang");
	finish(&s, c);

	/*
	 * Out of order: a read waiting for a block still in flight does not hold
	 * up a read of a block that is here; its answer comes when the block does.
	 */
	{
		struct store_provider *f2 = NULL;
		struct store_device *dd = NULL;
		unsigned char blk[BS], h[16];
		char path2[] = "/tmp/test-store-nbd2.XXXXXX";
		int t2 = mkstemp(path2);
		close(t2);
		store_file_open(path2, STORE_FILE_CREATE, NB * BS, &f2);
		struct store_device_opts o2 = {
		    .name = "memory", .block_size = BS, .destination = true};
		store_device_new(&o2, f2, &dd);
		memset(blk, 0x42, BS);
		store_device_deliver(dd, 0, blk, BS);
		start(&s, dd, &c);
		request(c, 0x25609513, 0, 101, 1 * BS, BS); /* block 1: missing */
		request(c, 0x25609513, 0, 102, 0, BS);      /* block 0: here */
		ok(recv_all(c, h, 16) == 0 && handle_of(h) == 102 && recv_all(c, back, BS) == 0 &&
		       back[0] == 0x42,
		   "the read of a present block is answered while an earlier one waits");
		request(c, 0x25609513, 2, 103, 0, 0); /* disconnect with a read still waiting */
		memset(blk, 0x43, BS);
		store_device_deliver(dd, 1, blk, BS);
		ok(recv_all(c, h, 16) == 0 && handle_of(h) == 101 && recv_all(c, back, BS) == 0 &&
		       back[0] == 0x43,
		   "the waiting read is answered once its block arrives, even after a disconnect "
		   "request");
		pthread_join(s.th, NULL);
		is_int(s.result, 0, "then the server ends cleanly");
		close(c);
		close(s.fd);
		store_device_free(dd);
		unlink(path2);
	}

	/* the kernel part */
	struct store_expose *e = NULL;
	struct store_expose_opts eo = {.kind = STORE_EXPOSE_NBD};
	if (!store_nbd_available()) {
		is_int(store_expose_auto(), STORE_EXPOSE_FUSE,
		       "auto picks fuse without the nbd module");
		is_int(store_expose_new(&eo, &d, 1, &e), -ENODEV,
		       "nbd exposure without the module: clean ENODEV");
		diag("kernel NBD part skipped here: the nbd module is not loaded (/sys/module/nbd "
		     "missing); tests/store-nbd-kernel.sh runs it in a QEMU guest");
		skip("kernel NBD device (netlink connect, /dev/nbdN I/O): nbd module not loaded");
	} else {
		is_int(store_expose_auto(), STORE_EXPOSE_NBD,
		       "auto picks nbd where the module is loaded");
		skip("kernel NBD device I/O is not exercised by the unit test");
	}
	store_device_free(d);
	unlink(path);
	return done_testing();
}
