/*
 * Host-side helper for tests/guest.sh: speaks to the guest over a QEMU
 * chardev UNIX socket, like drafter's host side will.
 *   test-guest-client call SOCKET FUNCTION [TIMEOUT_S]
 *       sends one panrpc request, waits for the response with the same
 *       call id (skipping empty lines and other messages), prints its err
 *       field ("" on success) and exits 0 when err is empty, 1 otherwise.
 *   test-guest-client liveness SOCKET [TIMEOUT_S]
 *       waits for one non-empty line and prints it.
 *   test-guest-client qmp SOCKET TIMEOUT_S CMD...
 *       QMP: sends each CMD (a JSON object) and waits for its return;
 *       the pseudo command "wait-migration" waits for the MIGRATION event
 *       "completed" (needs the "events" capability). Exit 1 on an error
 *       reply or a failed migration.
 * Exit 3 on timeout, 2 on usage or connection errors.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int connect_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* Reads one '\n'-terminated line into buf; 1 on success, 0 on EOF, -1 on timeout/error. */
static int read_line(int fd, char *buf, size_t len, long long deadline)
{
	size_t o = 0;

	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		long long left = deadline - now_ms();
		ssize_t n;

		if (left <= 0)
			return -1;
		if (poll(&p, 1, (int)left) <= 0)
			continue;
		n = read(fd, buf + o, 1);
		if (n <= 0)
			return n == 0 ? 0 : -1;
		if (buf[o] == '\n') {
			buf[o] = '\0';
			return 1;
		}
		if (o + 2 < len)
			o++;
	}
}

int main(int argc, char **argv)
{
	char line[65536];
	long long deadline;
	int fd;

	if (argc < 3)
		goto usage;
	fd = connect_unix(argv[2]);
	if (fd < 0) {
		fprintf(stderr, "test-guest-client: cannot connect to '%s': %s\n", argv[2],
		        strerror(errno));
		return 2;
	}
	if (strcmp(argv[1], "liveness") == 0) {
		deadline = now_ms() + 1000LL * (argc > 3 ? strtol(argv[3], NULL, 10) : 60);
		for (;;) {
			int r = read_line(fd, line, sizeof(line), deadline);

			if (r <= 0)
				return 3;
			if (line[0]) {
				printf("%s\n", line);
				return 0;
			}
		}
	}
	if (strcmp(argv[1], "qmp") == 0 && argc >= 4) {
		const char *mig = "";

		deadline = now_ms() + 1000LL * strtol(argv[3], NULL, 10);
		if (read_line(fd, line, sizeof(line), deadline) <= 0) /* greeting */
			return 3;
		for (int i = 4; i < argc; i++) {
			bool wait_mig = strcmp(argv[i], "wait-migration") == 0;
			size_t l = strlen(argv[i]);

			if (!wait_mig &&
			    (write(fd, argv[i], l) != (ssize_t)l || write(fd, "\n", 1) != 1))
				return 2;
			for (;;) {
				if (wait_mig && strcmp(mig, "completed") == 0)
					break;
				if (wait_mig && strcmp(mig, "failed") == 0) {
					fprintf(stderr, "test-guest-client: migration failed\n");
					return 1;
				}
				if (read_line(fd, line, sizeof(line), deadline) <= 0)
					return wait_mig || strstr(argv[i], "quit") ? 0 : 3;
				if (strstr(line, "\"MIGRATION\"")) {
					mig = strstr(line, "\"completed\"") ? "completed"
					      : strstr(line, "\"failed\"")  ? "failed"
					                                    : "";
					continue;
				}
				if (wait_mig || strstr(line, "\"event\""))
					continue;
				if (strncmp(line, "{\"error\"", strlen("{\"error\"")) == 0) {
					fprintf(stderr, "test-guest-client: %s: %s\n", argv[i],
					        line);
					return 1;
				}
				if (strncmp(line, "{\"return\"", strlen("{\"return\"")) == 0)
					break;
			}
		}
		return 0;
	}
	if (strcmp(argv[1], "call") == 0 && argc >= 4) {
		char req[512], call[64], want[128];
		int n;

		deadline = now_ms() + 1000LL * (argc > 4 ? strtol(argv[4], NULL, 10) : 60);
		snprintf(call, sizeof(call), "test-%d-%lld", (int)getpid(), now_ms());
		n = snprintf(req, sizeof(req),
		             "{\"request\":{\"call\":\"%s\",\"function\":\"%s\",\"args\":[]},"
		             "\"response\":null}\n",
		             call, argv[3]);
		if (write(fd, req, (size_t)n) != n)
			return 2;
		snprintf(want, sizeof(want), "{\"request\":null,\"response\":{\"call\":\"%s\",",
		         call);
		for (;;) {
			char *e;
			int r = read_line(fd, line, sizeof(line), deadline);

			if (r <= 0)
				return 3;
			if (strncmp(line, want, strlen(want)) != 0)
				continue;
			e = strstr(line, "\"err\":\"");
			if (!e)
				return 2;
			e += 7;
			e[strcspn(e, "\"")] = '\0';
			printf("%s\n", e);
			return *e ? 1 : 0;
		}
	}
usage:
	fprintf(stderr, "usage: test-guest-client call SOCKET FUNCTION [TIMEOUT_S] | liveness "
	                "SOCKET [TIMEOUT_S] | qmp SOCKET TIMEOUT_S CMD...\n");
	return 2;
}
