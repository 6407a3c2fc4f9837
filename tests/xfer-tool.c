/*
 * Test helper for the transfer and migration tests:
 *   xfer-tool hello source|dest [VERSION]   print a protocol hello
 *   xfer-tool writer FILE SEED [BLOCK]      write random blocks into FILE until a
 *                                           write fails; prints how many succeeded
 *   xfer-tool proxy LISTEN TARGET CUT       forward one TCP connection from
 *                                           127.0.0.1:LISTEN to 127.0.0.1:TARGET
 *                                           and cut both sides after CUT bytes
 *                                           (0: never); prints the bytes forwarded
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "core/xfer/wire.h"

static int cmd_hello(int argc, char **argv)
{
	struct xfer_hello h = { .version = XFER_VERSION, .caps = XFER_CAP_ZSTD,
				.max_payload = XFER_MAX_PAYLOAD };
	uint8_t b[XFER_HELLO_LEN];
	uint32_t v;

	if (argc < 3)
		return 2;
	h.role = strcmp(argv[2], "source") == 0 ? XFER_ROLE_SOURCE : XFER_ROLE_DEST;
	if (argc > 3) {
		if (parse_u32(argv[3], &v) < 0 || v > 65535)
			return 2;
		h.version = (uint16_t)v;
	}
	xfer_hello_encode(b, &h);
	return fwrite(b, 1, sizeof(b), stdout) == sizeof(b) ? 0 : 1;
}

static uint64_t rng;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmd_writer(int argc, char **argv)
{
	uint64_t seed, count = 0;
	uint32_t bs = 4096;
	struct stat st;
	int fd;

	if (argc < 4 || parse_u64(argv[3], &seed) < 0)
		return 2;
	if (argc > 4 && parse_u32(argv[4], &bs) < 0)
		return 2;
	rng = seed | 1;
	fd = open(argv[2], O_WRONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < bs) {
		perror(argv[2]);
		return 1;
	}
	uint8_t *buf = malloc(bs);
	uint64_t nblocks = (uint64_t)st.st_size / bs;
	setvbuf(stdout, NULL, _IONBF, 0);
	for (;;) {
		for (uint32_t i = 0; i < bs; i += 8) {
			uint64_t r = next_rand();
			memcpy(buf + i, &r, 8);
		}
		uint64_t b = next_rand() % nblocks;
		if (pwrite(fd, buf, bs, (off_t)(b * bs)) != (ssize_t)bs) {
			fprintf(stderr, "writer: stopped after %" PRIu64 " writes: %s\n", count,
				strerror(errno));
			break;
		}
		count++;
		if (count % 64 == 0 && fdatasync(fd) < 0)
			break;
	}
	printf("%" PRIu64 "\n", count);
	free(buf);
	close(fd);
	return 0;
}

static int tcp_listen(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)
		return -1;
	return fd;
}

static int tcp_dial(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

static int cmd_proxy(int argc, char **argv)
{
	uint32_t lp, tp;
	uint64_t cut, moved = 0;
	char buf[65536];

	if (argc < 5 || parse_u32(argv[2], &lp) < 0 || parse_u32(argv[3], &tp) < 0 ||
	    parse_u64(argv[4], &cut) < 0)
		return 2;
	int lfd = tcp_listen((uint16_t)lp);
	if (lfd < 0) {
		perror("listen");
		return 1;
	}
	/* Tell the test we listen: it waits for this line. */
	printf("listening\n");
	fflush(stdout);
	int a = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	int b = tcp_dial((uint16_t)tp);
	if (a < 0 || b < 0) {
		perror("proxy");
		return 1;
	}
	struct pollfd p[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
	for (;;) {
		if (poll(p, 2, -1) < 0)
			break;
		int from = p[0].revents ? 0 : p[1].revents ? 1 : -1;
		if (from < 0)
			continue;
		size_t want = sizeof(buf);
		if (cut && cut - moved < want)
			want = (size_t)(cut - moved);
		ssize_t n = read(p[from].fd, buf, want);
		if (n <= 0)
			break;
		if (write(p[1 - from].fd, buf, (size_t)n) != n)
			break;
		moved += (uint64_t)n;
		if (cut && moved >= cut)
			break;
	}
	/* A hard cut: reset rather than an orderly close. */
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(a);
	close(b);
	close(lfd);
	printf("%" PRIu64 "\n", moved);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "hello") == 0)
		return cmd_hello(argc, argv);
	if (strcmp(argv[1], "writer") == 0)
		return cmd_writer(argc, argv);
	if (strcmp(argv[1], "proxy") == 0)
		return cmd_proxy(argc, argv);
	fprintf(stderr, "usage: xfer-tool hello|writer|proxy ...\n");
	return 2;
}
