/*
 * The guest programs' plumbing: the original's Go flag syntax and
 * durations, and the channel to the host, which is either a vsock
 * connection to CID 2 (Firecracker) or a named virtio-serial port (QEMU).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "core/io.h"
#include "core/util.h"
#include "guest/guest.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static const struct guest_flag *find_flag(const struct guest_flag *flags, size_t n,
                                          const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

static int parse_u32_strict(const char *s, uint32_t *out)
{
	char *end;
	unsigned long long v;

	if (!*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return -EINVAL;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

static int set_flag(const struct guest_flag *f, const char *val, char *err, size_t errlen)
{
	int r = 0;

	switch (f->type) {
	case GUEST_FLAG_STRING:
		*(const char **)f->value = val;
		return 0;
	case GUEST_FLAG_U32:
		r = parse_u32_strict(val, f->value);
		break;
	case GUEST_FLAG_DURATION:
		r = guest_parse_duration(val, f->value);
		break;
	case GUEST_FLAG_BOOL:
		if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0 || strcmp(val, "t") == 0)
			*(bool *)f->value = true;
		else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0 ||
		         strcmp(val, "f") == 0)
			*(bool *)f->value = false;
		else
			r = -EINVAL;
		break;
	}
	if (r < 0)
		snprintf(err, errlen, "invalid value \"%s\" for flag -%s", val, f->name);
	return r;
}

int guest_flags_parse(const struct guest_flag *flags, size_t n, int argc, char **argv, char *err,
                      size_t errlen)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *eq;
		const struct guest_flag *f;
		size_t len;
		int r;

		/* Like Go's flag package: stop at the first non-flag or at "--". */
		if (a[0] != '-' || a[1] == '\0') {
			snprintf(err, errlen, "unexpected argument '%s'", a);
			return -EINVAL;
		}
		name = a + 1;
		if (*name == '-')
			name++;
		if (*name == '\0') {
			if (i + 1 < argc) {
				snprintf(err, errlen, "unexpected argument '%s'", argv[i + 1]);
				return -EINVAL;
			}
			return 0;
		}
		eq = strchr(name, '=');
		len = eq ? (size_t)(eq - name) : strlen(name);
		if ((len == 1 && name[0] == 'h') || (len == 4 && strncmp(name, "help", 4) == 0))
			return 1;
		f = find_flag(flags, n, name, len);
		if (!f) {
			snprintf(err, errlen, "flag provided but not defined: -%.*s", (int)len,
			         name);
			return -EINVAL;
		}
		if (eq)
			r = set_flag(f, eq + 1, err, errlen);
		else if (f->type == GUEST_FLAG_BOOL)
			r = set_flag(f, "true", err, errlen);
		else if (i + 1 < argc)
			r = set_flag(f, argv[++i], err, errlen);
		else {
			snprintf(err, errlen, "flag needs an argument: -%s", f->name);
			r = -EINVAL;
		}
		if (r < 0)
			return r;
	}
	return 0;
}

void guest_flags_usage(const char *prog, const struct guest_flag *flags, size_t n, void *out)
{
	FILE *o = out;
	const char *last = "";

	/* Go lists flags sorted by name */
	fprintf(o, "Usage of %s:\n", prog);
	for (size_t k = 0; k < n; k++) {
		const struct guest_flag *f = NULL;

		for (size_t i = 0; i < n; i++)
			if (strcmp(flags[i].name, last) > 0 &&
			    (!f || strcmp(flags[i].name, f->name) < 0))
				f = &flags[i];
		if (!f)
			break;
		last = f->name;
		const char *t = f->type == GUEST_FLAG_STRING ? " string"
		                : f->type == GUEST_FLAG_U32  ? " uint"
		                : f->type == GUEST_FLAG_BOOL ? ""
		                                             : " duration";
		fprintf(o, "  -%s%s\n    \t%s\n", f->name, t, f->usage);
	}
}

int guest_parse_duration(const char *s, uint64_t *ns)
{
	static const struct {
		const char *unit;
		uint64_t mult;
	} units[] = {
	    /* longest first, so "ms" wins over "m" */
	    {"ns", 1ULL},
	    {"us", 1000ULL},
	    {"\xc2\xb5s", 1000ULL},
	    {"ms", 1000000ULL},
	    {"s", 1000000000ULL},
	    {"m", 60000000000ULL},
	    {"h", 3600000000000ULL},
	};
	uint64_t total = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	if (*p == '+')
		p++;
	if (strcmp(p, "0") == 0) {
		*ns = 0;
		return 0;
	}
	while (*p) {
		uint64_t whole = 0, frac = 0, scale = 1, mult = 0;
		bool digits = false;
		size_t ulen = 0;

		while (*p >= '0' && *p <= '9') {
			if (whole > (UINT64_MAX - 9) / 10)
				return -ERANGE;
			whole = whole * 10 + (uint64_t)(*p++ - '0');
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9') {
				if (scale < 1000000000000000000ULL) {
					frac = frac * 10 + (uint64_t)(*p - '0');
					scale *= 10;
				}
				p++;
				digits = true;
			}
		}
		if (!digits)
			return -EINVAL;
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t l = strlen(units[i].unit);

			if (strncmp(p, units[i].unit, l) == 0 && l > ulen) {
				/* "m" must not match the start of "ms" */
				ulen = l;
				mult = units[i].mult;
			}
		}
		if (!mult)
			return -EINVAL; /* Go requires a unit except for "0" */
		p += ulen;
		if (whole > UINT64_MAX / mult)
			return -ERANGE;
		whole *= mult;
		whole += (uint64_t)((double)frac * (double)mult / (double)scale);
		if (total > UINT64_MAX - whole)
			return -ERANGE;
		total += whole;
	}
	*ns = total;
	return 0;
}

int guest_transport_parse(const char *s, enum guest_transport *out)
{
	if (strcmp(s, "auto") == 0)
		*out = GUEST_TRANSPORT_AUTO;
	else if (strcmp(s, "vsock") == 0)
		*out = GUEST_TRANSPORT_VSOCK;
	else if (strcmp(s, "virtio-serial") == 0 || strcmp(s, "serial") == 0)
		*out = GUEST_TRANSPORT_SERIAL;
	else
		return -EINVAL;
	return 0;
}

int guest_serial_find(const char *sysfs_dir, const char *name, char *path, size_t len)
{
	_cleanup_(closedirp) DIR *d = opendir(sysfs_dir);
	struct dirent *de;

	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		char p[512], buf[256];

		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s/name", sysfs_dir, de->d_name);
		if (read_small_file(p, buf, sizeof(buf)) <= 0)
			continue;
		if (strcmp(buf, name) != 0)
			continue;
		if ((size_t)snprintf(path, len, "/dev/%s", de->d_name) >= len)
			return -ENAMETOOLONG;
		return 0;
	}
	return -ENOENT;
}

enum guest_transport guest_transport_detect(enum guest_transport want, const char *sysfs_dir,
                                            const char *name, char *path, size_t len)
{
	if (want == GUEST_TRANSPORT_VSOCK)
		return want;
	if (guest_serial_find(sysfs_dir, name, path, len) == 0)
		return GUEST_TRANSPORT_SERIAL;
	/* Asked for a port that is not there: report serial, opening it fails clearly. */
	if (want == GUEST_TRANSPORT_SERIAL) {
		snprintf(path, len, "/dev/virtio-ports/%s", name);
		return want;
	}
	return GUEST_TRANSPORT_VSOCK;
}

int guest_vsock_dial(uint32_t cid, uint32_t port, uint64_t timeout_ns)
{
	struct sockaddr_vm sa = {
	    .svm_family = AF_VSOCK,
	    .svm_cid = cid,
	    .svm_port = port,
	};
	_cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int soerr = 0, flags;
	socklen_t sl = sizeof(soerr);

	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		struct pollfd p = {.fd = fd, .events = POLLOUT};
		uint64_t ms = timeout_ns / 1000000;
		int r;

		if (errno != EINPROGRESS)
			return -errno;
		do
			r = poll(&p, 1, ms > INT32_MAX ? -1 : (int)ms);
		while (r < 0 && errno == EINTR);
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			return -errno;
		if (soerr)
			return -soerr;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int guest_serial_wait_host(int fd)
{
	/* No EINTR retry here: a caller's alarm must be able to end the wait. */
	ssize_t n = write(fd, "\n", 1);

	if (n < 0)
		return -errno;
	return n == 1 ? 0 : -EIO;
}

int guest_boot_id(char *buf, size_t len)
{
	ssize_t n = read_small_file("/proc/sys/kernel/random/boot_id", buf, len);

	return n < 0 ? (int)n : 0;
}
