/*
 * Test helper for the transfer and migration tests:
 *   xfer-tool hello source|dest [VERSION]   print a protocol hello
 *   xfer-tool writer FILE SEED [BLOCK]      write random blocks into FILE until a
 *                                           write fails; prints how many succeeded
 *   xfer-tool proxy LISTEN TARGET CUT [MODE]
 *                                           forward one TCP connection from
 *                                           127.0.0.1:LISTEN to 127.0.0.1:TARGET
 *                                           and cut both sides after CUT bytes
 *                                           (0: never); the last line printed is
 *                                           the number of bytes forwarded.
 *                                           MODE follows the frames TARGET (the
 *                                           migration source) sends:
 *                                             auth-cut: stop right after the
 *                                             AUTHORITY frame, wait (10 s at most)
 *                                             for the destination's answer, which
 *                                             is not forwarded, and cut both sides
 *                                             auth-rate=BYTES: after AUTHORITY,
 *                                             forward TARGET's bytes at BYTES per
 *                                             second at most
 *                                             rate=BYTES: the same from the start
 *                                           and prints "authority forwarded after
 *                                           N bytes" and "done forwarded after N
 *                                           bytes" when those frames passed.
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

#include "core/io.h"
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

/* RCVBUF > 0: a small receive buffer, so that little data waits in it. */
static int tcp_dial(uint16_t port, int rcvbuf)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

/*
 * Follows the source's byte stream: its hello, then frame headers and
 * payloads, so that the proxy knows where a frame ends.
 */
struct framer {
	uint8_t buf[XFER_HELLO_LEN]; /* the hello, then each header */
	size_t have, want;           /* bytes of BUF collected, needed */
	uint64_t skip;               /* payload bytes of the current frame still to pass */
	uint8_t type;                /* the frame whose payload is passing */
	bool lost;                   /* a header did not decode: stop following */
};

/*
 * Follow the N bytes at P. Returns how many of them reach the end of the
 * first frame that ends among them, with *TYPE its type; N and *TYPE 0 when
 * no frame ends there.
 */
static size_t framer_feed(struct framer *f, const uint8_t *p, size_t n, uint8_t *type)
{
	struct xfer_hdr h;
	size_t i = 0, k;

	*type = 0;
	while (i < n && !f->lost) {
		if (f->skip) {
			k = f->skip < n - i ? (size_t)f->skip : n - i;
			f->skip -= k;
			i += k;
			if (!f->skip) {
				*type = f->type;
				return i;
			}
			continue;
		}
		k = f->want - f->have < n - i ? f->want - f->have : n - i;
		memcpy(f->buf + f->have, p + i, k);
		f->have += k;
		i += k;
		if (f->have < f->want)
			break;
		f->have = 0;
		if (f->want == XFER_HELLO_LEN) {
			f->want = XFER_HDR_LEN;
			continue;
		}
		if (xfer_hdr_decode(f->buf, &h) < 0) {
			fprintf(stderr, "proxy: cannot follow the frames after %zu bytes of a read\n", i);
			f->lost = true;
			break;
		}
		f->type = h.type;
		f->skip = h.len;
		if (!h.len) {
			*type = h.type;
			return i;
		}
	}
	return n;
}

enum proxy_mode { PROXY_PLAIN, PROXY_AUTH_CUT, PROXY_AUTH_RATE, PROXY_RATE };

struct proxy {
	int fd[2]; /* 0: the client that connected (destination), 1: the target (source) */
	enum proxy_mode mode;
	uint64_t cut, moved;
	uint64_t rate;     /* bytes per second (PROXY_RATE; PROXY_AUTH_RATE: after AUTHORITY) */
	double tokens;     /* bytes the rate allows now */
	uint64_t refill_ns;
	bool after_auth;
	bool hung_up; /* a side closed (or failed) by itself: no cut */
	struct framer fr;
};

static int proxy_parse_mode(struct proxy *px, const char *s)
{
	if (strcmp(s, "auth-cut") == 0) {
		px->mode = PROXY_AUTH_CUT;
		return 0;
	}
	if (strncmp(s, "auth-rate=", 10) == 0 && parse_u64(s + 10, &px->rate) == 0 && px->rate > 0) {
		px->mode = PROXY_AUTH_RATE;
		return 0;
	}
	if (strncmp(s, "rate=", 5) == 0 && parse_u64(s + 5, &px->rate) == 0 && px->rate > 0) {
		px->mode = PROXY_RATE;
		px->refill_ns = now_ns();
		return 0;
	}
	return -EINVAL;
}

/* Throttled: how many bytes the target may send now; 0 with *WAIT_MS until more. */
static size_t proxy_allowance(struct proxy *px, size_t want, int *wait_ms)
{
	double burst = (double)px->rate / 20 > 4096 ? (double)px->rate / 20 : 4096;
	uint64_t now = now_ns();

	*wait_ms = -1;
	if (px->mode != PROXY_RATE && (px->mode != PROXY_AUTH_RATE || !px->after_auth))
		return want;
	px->tokens += (double)(now - px->refill_ns) * (double)px->rate / 1e9;
	px->refill_ns = now;
	if (px->tokens > burst)
		px->tokens = burst;
	if (px->tokens < 1024) {
		*wait_ms = 1 + (int)((1024 - px->tokens) * 1000 / (double)px->rate);
		return 0;
	}
	return px->tokens < (double)want ? (size_t)px->tokens : want;
}

static void proxy_event(struct proxy *px, uint8_t type)
{
	const char *what = type == XFER_T_AUTHORITY ? "authority" : type == XFER_T_DONE ? "done" : NULL;

	if (!what)
		return;
	printf("%s forwarded after %" PRIu64 " bytes\n", what, px->moved);
	fflush(stdout);
	if (type == XFER_T_AUTHORITY) {
		px->after_auth = true;
		px->refill_ns = now_ns();
		px->tokens = 0;
	}
}

/* Pass N bytes from the target on, frame by frame. 1: stop here (auth-cut). */
static int proxy_from_target(struct proxy *px, const uint8_t *p, size_t n)
{
	while (n) {
		uint8_t type = 0;
		size_t k = px->mode == PROXY_PLAIN ? n : framer_feed(&px->fr, p, n, &type);

		if (write_all(px->fd[0], p, k) < 0)
			return -1;
		px->moved += k;
		p += k;
		n -= k;
		if (px->mode == PROXY_PLAIN)
			break;
		proxy_event(px, type);
		if (type == XFER_T_AUTHORITY && px->mode == PROXY_AUTH_CUT)
			return 1;
	}
	return 0;
}

/* auth-cut: the destination answers AUTHORITY (its ACK, a request): it took over. */
static void proxy_wait_answer(struct proxy *px)
{
	struct pollfd p = { .fd = px->fd[0], .events = POLLIN };
	uint8_t b[512];

	if (poll(&p, 1, 10000) > 0 && read(px->fd[0], b, sizeof(b)) > 0)
		printf("the destination answered; cutting\n");
	else
		printf("no answer from the destination; cutting\n");
}

static void proxy_run(struct proxy *px)
{
	static uint8_t buf[65536];

	for (;;) {
		int wait_ms;
		size_t want = proxy_allowance(px, sizeof(buf), &wait_ms);
		struct pollfd p[2] = { { .fd = px->fd[0], .events = POLLIN },
				       { .fd = px->fd[1], .events = want ? POLLIN : 0 } };

		if (poll(p, 2, wait_ms) < 0)
			return;
		int from = p[0].revents ? 0 : p[1].revents ? 1 : -1;
		if (from < 0)
			continue;
		if (from == 0) {
			want = sizeof(buf);
		} else if (!want) { /* the target hung up, or failed: its data can wait */
			poll(NULL, 0, wait_ms);
			continue;
		}
		if (px->cut && px->cut - px->moved < want)
			want = (size_t)(px->cut - px->moved);
		ssize_t n = read(px->fd[from], buf, want);
		if (n <= 0) {
			px->hung_up = true;
			return;
		}
		if (from == 1) {
			if (px->mode == PROXY_RATE || (px->mode == PROXY_AUTH_RATE && px->after_auth))
				px->tokens -= (double)n;
			int r = proxy_from_target(px, buf, (size_t)n);
			if (r == 1)
				proxy_wait_answer(px);
			if (r != 0)
				return;
		} else {
			if (write_all(px->fd[1], buf, (size_t)n) < 0)
				return;
			px->moved += (uint64_t)n;
		}
		if (px->cut && px->moved >= px->cut)
			return;
	}
}

static int cmd_proxy(int argc, char **argv)
{
	struct proxy px = { .fr.want = XFER_HELLO_LEN };
	uint32_t lp, tp;

	if (argc < 5 || parse_u32(argv[2], &lp) < 0 || parse_u32(argv[3], &tp) < 0 ||
	    parse_u64(argv[4], &px.cut) < 0 || (argc > 5 && proxy_parse_mode(&px, argv[5]) < 0))
		return 2;
	int lfd = tcp_listen((uint16_t)lp);
	if (lfd < 0) {
		perror("listen");
		return 1;
	}
	/* Tell the test we listen: it waits for this line. */
	printf("listening\n");
	fflush(stdout);
	px.fd[0] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	/* Throttled, little may wait in the proxy: requested blocks overtake bulk data at the source. */
	px.fd[1] = tcp_dial((uint16_t)tp, px.mode == PROXY_AUTH_RATE || px.mode == PROXY_RATE ? 65536 : 0);
	if (px.fd[0] < 0 || px.fd[1] < 0) {
		perror("proxy");
		return 1;
	}
	proxy_run(&px);
	/*
	 * A hard cut: reset rather than an orderly close. A side that hung up
	 * by itself is passed on as it came (a reset would make the other side
	 * drop what it has not read yet, such as a last acknowledgement).
	 */
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	if (!px.hung_up) {
		setsockopt(px.fd[0], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		setsockopt(px.fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(px.fd[0]);
	close(px.fd[1]);
	close(lfd);
	printf("%" PRIu64 "\n", px.moved);
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
