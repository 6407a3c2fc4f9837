/*
 * Unit tests of the package core (pkg_create, pkg_extract, pkg_scan_regions)
 * on real files: round trips of dense, sparse, zero-filled and empty
 * devices, any-order and partial extraction, missing devices, and hostile,
 * truncated and corrupt packages built byte by byte here. Every failure must
 * leave no output file and no temporary file behind. Sizes stay small so
 * that the sanitizer build runs this quickly; the big cases are in
 * tests/package.sh.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "core/pkg/pkg.h"
#include "core/util.h"
#include "tests/tap.h"

static char dir[256];

static char *pathf(const char *name)
{
	static char bufs[32][512];
	static int k;
	char *b = bufs[k++ % 32];

	snprintf(b, sizeof bufs[0], "%s/%s", dir, name);
	return b;
}

/* Deterministic pseudo-random bytes. */
static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ seed;

	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

static void write_at(const char *path, uint64_t off, size_t len, uint32_t seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	uint8_t *b = malloc(len);

	fill_random(b, len, seed);
	if (fd < 0 || pwrite(fd, b, len, (off_t)off) != (ssize_t)len)
		abort();
	free(b);
	close(fd);
}

static void make_file(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	close(fd);
}

static bool same_content(const char *a, const char *b)
{
	FILE *fa = fopen(a, "rbe"), *fb = fopen(b, "rbe");
	bool same = fa && fb;
	char ba[65536], bb[65536];

	while (same) {
		size_t na = fread(ba, 1, sizeof ba, fa), nb = fread(bb, 1, sizeof bb, fb);
		if (na != nb || memcmp(ba, bb, na) != 0)
			same = false;
		if (na == 0)
			break;
	}
	if (fa)
		fclose(fa);
	if (fb)
		fclose(fb);
	return same;
}

static uint64_t blocks_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : UINT64_MAX;
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Number of directory entries of D besides . and .. */
static int count_entries(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *de;
	int n = 0;

	if (!dp)
		return -1;
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(dp);
	return n;
}

/* ---- building tar streams by hand ---- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
	}
	if (d)
		memcpy(b->p + b->n, d, n);
	else
		memset(b->p + b->n, 0, n);
	b->n += n;
}

static void tar_header(struct buf *b, const char *name, char type, uint64_t size, const char *link)
{
	uint8_t h[512] = { 0 };
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	memcpy(h + 100, "0000644", 8);
	memcpy(h + 108, "0000000", 8);
	memcpy(h + 116, "0000000", 8);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	memcpy(h + 136, "14000000000", 12);
	h[156] = (uint8_t)type;
	if (link)
		snprintf((char *)h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	memset(h + 148, ' ', 8);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	buf_add(b, h, 512);
}

static void tar_data(struct buf *b, const void *data, size_t size)
{
	buf_add(b, data, size);
	if (size % 512)
		buf_add(b, NULL, 512 - size % 512);
}

static void tar_file(struct buf *b, const char *name, char type, const void *data, size_t size,
		     const char *link)
{
	tar_header(b, name, type, size, link);
	tar_data(b, data, size);
}

static void tar_end(struct buf *b)
{
	buf_add(b, NULL, 1024);
}

static void write_zst(const char *path, const struct buf *b)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	size_t cap = ZSTD_compressBound(b->n), n;
	void *out = malloc(cap);
	FILE *f = fopen(path, "wbe");

	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	n = ZSTD_compress2(c, out, cap, b->p, b->n);
	if (ZSTD_isError(n) || !f || fwrite(out, 1, n, f) != n)
		abort();
	fclose(f);
	free(out);
	ZSTD_freeCCtx(c);
}

/* Extract device "dev" from a hand-built package and expect a refusal mentioning WANT. */
static void expect_refused(const char *what, struct buf *b, const char *want)
{
	struct pkg_device d = { "dev", pathf("hostile/out/dev") };
	struct pkg_error err = { { 0 } };
	int r;

	write_zst(pathf("hostile.tar.zst"), b);
	r = pkg_extract(pathf("hostile.tar.zst"), &d, 1, NULL, NULL, &err);
	ok(r < 0 && strstr(err.msg, want) != NULL, "%s is refused", what);
	diag("r=%d msg='%s' want '%s'", r, err.msg, want);
	ok(!exists(d.path) && count_entries(pathf("hostile/out")) <= 0,
	   "%s: nothing written", what);
	free(b->p);
	*b = (struct buf){ 0 };
}

static void pax_record(struct buf *rec, const char *key, const char *value)
{
	size_t base = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
	size_t total = base + 1;
	char digits[32], *line;

	/* The length prefix counts its own digits. */
	for (;;) {
		snprintf(digits, sizeof digits, "%zu", total);
		if (base + strlen(digits) == total)
			break;
		total = base + strlen(digits);
	}
	line = malloc(total + 1);
	snprintf(line, total + 1, "%s %s=%s\n", digits, key, value);
	buf_add(rec, line, total);
	free(line);
}

static void test_scan(void)
{
	struct pkg_region *rg = NULL;
	size_t n = 0;
	int fd;

	/* data at 0 (8 KiB), a 1 MiB zero run written as data, data at 2 MiB, hole to 8 MiB */
	make_file(pathf("scan"), 8 << 20);
	write_at(pathf("scan"), 0, 8192, 1);
	fd = open(pathf("scan"), O_RDWR | O_CLOEXEC);
	{
		uint8_t *z = calloc(1, 1 << 20);
		if (pwrite(fd, z, 1 << 20, 8192) != 1 << 20)
			abort();
		free(z);
	}
	close(fd);
	write_at(pathf("scan"), 2 << 20, 4096, 2);
	fd = open(pathf("scan"), O_RDONLY | O_CLOEXEC);
	is_int(pkg_scan_regions(fd, 8 << 20, 65536, 0, &rg, &n), 0, "scan succeeds");
	is_int(n, 2, "two data regions (zero run and hole left out)");
	if (n == 2) {
		ok(rg[0].offset == 0 && rg[0].length == 8192, "first region is [0, 8 KiB)");
		ok(rg[1].offset == 2 << 20 && rg[1].length == 4096, "second region is [2 MiB, +4 KiB)");
	}
	free(rg);
	rg = NULL;
	/* A gap below the minimum hole is kept as data. */
	is_int(pkg_scan_regions(fd, 8 << 20, 4 << 20, 0, &rg, &n), 0, "scan with a large minimum hole");
	ok(n == 1 && rg[0].offset == 0 && rg[0].length == (2 << 20) + 4096,
	   "short gaps merge into one region");
	free(rg);
	rg = NULL;
	close(fd);

	/*
	 * The map cap: 16 data blocks, gaps alternating 64 KiB and 192 KiB.
	 * With at most 10 regions the minimum hole doubles to 128 KiB, the
	 * short gaps merge, and 8 regions remain, each two blocks and a gap.
	 */
	make_file(pathf("many"), 4 << 20);
	{
		uint64_t off = 0;
		for (int i = 0; i < 16; i++) {
			write_at(pathf("many"), off, 4096, (uint32_t)i);
			off += 4096 + (i % 2 ? 192 << 10 : 64 << 10);
		}
	}
	fd = open(pathf("many"), O_RDONLY | O_CLOEXEC);
	is_int(pkg_scan_regions(fd, 4 << 20, 65536, 0, &rg, &n), 0, "scan of 16 separate blocks");
	is_int(n, 16, "16 regions without a cap");
	free(rg);
	rg = NULL;
	is_int(pkg_scan_regions(fd, 4 << 20, 65536, 10, &rg, &n), 0, "scan with a cap of 10 regions");
	is_int(n, 8, "the cap coarsens the map to 8 regions");
	if (n == 8)
		ok(rg[0].offset == 0 && rg[0].length == 4096 + (64 << 10) + 4096 &&
			   rg[1].offset == 4096 + (64 << 10) + 4096 + (192 << 10),
		   "merged regions span a block, the short gap and the next block");
	free(rg);
	rg = NULL;
	close(fd);

	/* An all-zero file has no data. */
	make_file(pathf("zeros"), 3 << 20);
	fd = open(pathf("zeros"), O_RDONLY | O_CLOEXEC);
	is_int(pkg_scan_regions(fd, 3 << 20, 65536, 0, &rg, &n), 0, "scan of a hole-only file");
	is_int(n, 0, "no regions in a hole-only file");
	free(rg);
	close(fd);
}

static void test_round_trip(void)
{
	struct pkg_device in[] = {
		{ "state", pathf("src/state.bin") },
		{ "memory", pathf("src/memory.bin") },
		{ "disk", pathf("src/disk.img") },
		{ "zero", pathf("src/zero.img") },
		{ "empty", pathf("src/empty") },
	};
	struct pkg_device out[] = {
		{ "empty", pathf("dst/a/empty") },
		{ "disk", pathf("dst/b/c/disk.img") },
		{ "zero", pathf("dst/zero.img") },
		{ "memory", pathf("dst/memory.bin") },
		{ "state", pathf("dst/state.bin") },
	};
	struct pkg_options opt = { .level = 3, .threads = 2 };
	struct pkg_stats st = { 0 };
	struct pkg_error err = { { 0 } };
	uint8_t *z = calloc(1, 256 << 10);
	int fd, r;

	mkdir(pathf("src"), 0755);
	write_at(in[0].path, 0, 3000001, 7);            /* dense, odd size, several chunks */
	make_file(in[1].path, 16 << 20);                /* memory: zero pages as data */
	fd = open(in[1].path, O_WRONLY | O_CLOEXEC);
	for (int i = 0; i < 64; i++)
		if (pwrite(fd, z, 256 << 10, (off_t)i << 18) != 256 << 10)
			abort();
	close(fd);
	write_at(in[1].path, 1 << 20, 65536, 8);
	write_at(in[1].path, 9 << 20, 4096, 9);
	make_file(in[2].path, 64 << 20);                /* disk: holes */
	write_at(in[2].path, 0, 4096, 10);
	write_at(in[2].path, 40 << 20, 100000, 11);
	write_at(in[2].path, (64 << 20) - 10, 10, 12);  /* data at the very end */
	make_file(in[3].path, 5 << 20);                 /* all hole */
	make_file(in[4].path, 0);
	free(z);

	r = pkg_create(pathf("pkg.tar.zst"), in, 5, &opt, &st, &err);
	is_int(r, 0, "create a package of five devices");
	if (r)
		diag("%s", err.msg);
	is_int(st.devices, 5, "stats count the devices");
	ok(st.logical == 3000001 + (16 << 20) + (64 << 20) + (5 << 20), "stats count logical bytes");
	ok(st.data < 3000001 + 65536 + 4096 + 4096 + 100000 + 4096 + 3 * 65536,
	   "only data regions are stored (%llu bytes)", (unsigned long long)st.data);
	ok(st.archive > 3000000 && st.archive < 4 << 20, "the package holds little more than the random data (%llu bytes)",
	   (unsigned long long)st.archive);
	/* scan, many, zeros, src/ and the package */
	is_int(count_entries(dir), 5, "no temporary file next to the package");

	/* Extract in a different order than the archive, into fresh directories. */
	r = pkg_extract(pathf("pkg.tar.zst"), out, 5, &opt, &st, &err);
	is_int(r, 0, "extract all five in another order");
	if (r)
		diag("%s", err.msg);
	for (int i = 0; i < 5; i++) {
		const char *src = NULL;
		for (int j = 0; j < 5; j++)
			if (!strcmp(in[j].name, out[i].name))
				src = in[j].path;
		ok(same_content(src, out[i].path), "device '%s' round-trips", out[i].name);
	}
	ok(blocks_of(pathf("dst/b/c/disk.img")) < 1 << 20, "extracted disk is sparse (%llu bytes allocated)",
	   (unsigned long long)blocks_of(pathf("dst/b/c/disk.img")));
	ok(blocks_of(pathf("dst/memory.bin")) < 1 << 20,
	   "zero pages of memory come back as holes (%llu bytes allocated)",
	   (unsigned long long)blocks_of(pathf("dst/memory.bin")));
	is_int(blocks_of(pathf("dst/zero.img")), 0, "hole-only device has no blocks");

	/* Only the requested device is written. */
	{
		struct pkg_device one = { "disk", pathf("only/disk.img") };
		r = pkg_extract(pathf("pkg.tar.zst"), &one, 1, NULL, NULL, &err);
		is_int(r, 0, "extract one device");
		is_int(count_entries(pathf("only")), 1, "only that device is written");
		ok(same_content(in[2].path, one.path), "the one device round-trips");
	}
}

static void test_missing(void)
{
	struct pkg_device in[] = {
		{ "state", pathf("src/state.bin") },
		{ "disk", pathf("src/nonexistent.img") },
	};
	struct pkg_device out[] = {
		{ "state", pathf("miss/state.bin") },
		{ "oci", pathf("miss/oci.ext4") },
	};
	struct pkg_device dup[] = {
		{ "state", pathf("src/state.bin") },
		{ "state", pathf("src/disk.img") },
	};
	struct pkg_error err = { { 0 } };
	int r;

	mkdir(pathf("m"), 0755);
	r = pkg_create(pathf("m/pkg.tar.zst"), in, 2, NULL, NULL, &err);
	is_int(r, -ENOENT, "create with a missing device fails with ENOENT");
	ok(strstr(err.msg, "cannot open device 'disk' at '") && strstr(err.msg, "No such file"),
	   "the error names the device and the cause (%s)", err.msg);
	is_int(count_entries(pathf("m")), 0, "no package and no temporary file written");

	r = pkg_create(pathf("m/pkg.tar.zst"), dup, 2, NULL, NULL, &err);
	ok(r == -EINVAL && strstr(err.msg, "'state' is listed twice"), "duplicate device names refused");
	is_int(count_entries(pathf("m")), 0, "nothing written for duplicate names");

	r = pkg_extract(pathf("pkg.tar.zst"), out, 2, NULL, NULL, &err);
	is_int(r, -ENOENT, "extracting a device the package lacks fails with ENOENT");
	ok(strstr(err.msg, "device 'oci' is not in package") != NULL, "the error names the missing device");
	ok(!exists(out[0].path), "no device written when one is missing");
	is_int(count_entries(pathf("miss")), 0, "no temporary file left");

	r = pkg_extract(pathf("nonexistent.tar.zst"), out, 1, NULL, NULL, &err);
	ok(r == -ENOENT && strstr(err.msg, "cannot open package"), "a missing package is reported");
	{
		struct pkg_options bad = { .level = 99 };
		r = pkg_create(pathf("m/x.tar.zst"), in, 1, &bad, NULL, &err);
		ok(r == -EINVAL && strstr(err.msg, "compression level 99"), "an invalid level is refused");
	}
}

static void test_hostile(void)
{
	struct buf b = { 0 }, rec = { 0 };
	char data[100] = "payload";

	mkdir(pathf("hostile"), 0755);
	mkdir(pathf("hostile/out"), 0755);

	tar_file(&b, "/etc/dev", '0', data, 7, NULL);
	tar_end(&b);
	expect_refused("an absolute name", &b, "has an absolute name");

	tar_file(&b, "../dev", '0', data, 7, NULL);
	tar_end(&b);
	expect_refused("a '..' name", &b, "has a '..' component");

	tar_file(&b, "x/../../dev", '0', data, 7, NULL);
	tar_end(&b);
	expect_refused("a nested '..' name", &b, "has a '..' component");

	tar_file(&b, "dev", '2', NULL, 0, "/etc/passwd");
	tar_end(&b);
	expect_refused("a symbolic link", &b, "is a symbolic link");

	tar_file(&b, "other", '0', data, 7, NULL);
	tar_file(&b, "dev", '1', NULL, 0, "other");
	tar_end(&b);
	expect_refused("a hard link", &b, "is a hard link");

	tar_file(&b, "dev", '3', NULL, 0, NULL);
	tar_end(&b);
	expect_refused("a character device", &b, "is a device node");

	tar_file(&b, "dev", '4', NULL, 0, NULL);
	tar_end(&b);
	expect_refused("a block device", &b, "is a device node");

	tar_file(&b, "dev/", '5', NULL, 0, NULL);
	tar_end(&b);
	expect_refused("a directory", &b, "is a directory");

	tar_file(&b, "dev", '6', NULL, 0, NULL);
	tar_end(&b);
	expect_refused("a FIFO", &b, "is a FIFO");

	tar_file(&b, "dev", '0', data, 7, NULL);
	tar_file(&b, "dev", '0', data, 7, NULL);
	tar_end(&b);
	expect_refused("a duplicate name", &b, "appears twice");

	tar_file(&b, "dev", '0', data, 7, NULL);
	tar_file(&b, "./dev", '0', data, 7, NULL);
	tar_end(&b);
	expect_refused("a duplicate name spelt with ./", &b, "appears twice");

	/* An unrequested hostile entry still condemns the package. */
	tar_file(&b, "dev", '0', data, 7, NULL);
	tar_file(&b, "evil", '2', NULL, 0, "/");
	tar_end(&b);
	expect_refused("a link after the wanted entry", &b, "is a symbolic link");

	/* A PAX header larger than libarchive's 1 MiB bound. */
	{
		char *big = malloc(2 << 20);
		memset(big, 'a', (2 << 20) - 1);
		big[(2 << 20) - 1] = '\0';
		pax_record(&rec, "comment", big);
		free(big);
		tar_file(&b, "PaxHeader/dev", 'x', rec.p, rec.n, NULL);
		tar_file(&b, "dev", '0', data, 7, NULL);
		tar_end(&b);
		free(rec.p);
		rec = (struct buf){ 0 };
		expect_refused("a huge PAX header", &b, "too large");
	}

	/* A GNU long name larger than libarchive's 1 MiB bound. */
	{
		char *big = malloc((2 << 20) + 1);
		memset(big, 'n', 2 << 20);
		big[2 << 20] = '\0';
		tar_file(&b, "././@LongLink", 'L', big, (2 << 20) + 1, NULL);
		free(big);
		tar_file(&b, "dev", '0', data, 7, NULL);
		tar_end(&b);
		expect_refused("a huge GNU long name", &b, "too large");
	}

	/* A name past our own bound, in a PAX path record. */
	{
		char *name = malloc(PKG_MAX_NAME + 10);
		memset(name, 'p', PKG_MAX_NAME + 9);
		name[PKG_MAX_NAME + 9] = '\0';
		pax_record(&rec, "path", name);
		free(name);
		tar_file(&b, "PaxHeader/dev", 'x', rec.p, rec.n, NULL);
		tar_file(&b, "dev", '0', data, 7, NULL);
		tar_end(&b);
		free(rec.p);
		rec = (struct buf){ 0 };
		expect_refused("a name longer than the limit", &b, "name that is too long");
	}

	/* Many PAX headers in a row: each within bounds, together over our limit. */
	{
		char *v = malloc(900 << 10);
		memset(v, 'b', (900 << 10) - 1);
		v[(900 << 10) - 1] = '\0';
		pax_record(&rec, "comment", v);
		free(v);
		for (int i = 0; i < 7; i++)
			tar_file(&b, "PaxHeader/dev", 'x', rec.p, rec.n, NULL);
		tar_file(&b, "dev", '0', data, 7, NULL);
		tar_end(&b);
		free(rec.p);
		rec = (struct buf){ 0 };
		expect_refused("a flood of PAX headers", &b, "headers of an entry exceed the limit");
	}

	/* A GNU sparse 1.0 entry whose map goes on for megabytes. */
	{
		struct buf map = { 0 };
		const uint64_t entries = 1600000;
		char line[64];
		int n = snprintf(line, sizeof line, "%llu\n", (unsigned long long)entries);

		buf_add(&map, line, (size_t)n);
		for (uint64_t i = 0; i < entries; i++)
			buf_add(&map, "0\n0\n", 4);
		pax_record(&rec, "GNU.sparse.major", "1");
		pax_record(&rec, "GNU.sparse.minor", "0");
		pax_record(&rec, "GNU.sparse.name", "dev");
		pax_record(&rec, "GNU.sparse.realsize", "1048576");
		tar_file(&b, "PaxHeader/dev", 'x', rec.p, rec.n, NULL);
		tar_file(&b, "GNUSparseFile/dev", '0', map.p, map.n, NULL);
		tar_end(&b);
		free(rec.p);
		free(map.p);
		rec = (struct buf){ 0 };
		expect_refused("a sparse map bomb", &b, "exceed");
	}

	/* Too many entries. */
	for (int i = 0; i <= PKG_MAX_ENTRIES; i++) {
		char name[32];
		snprintf(name, sizeof name, "e%d", i);
		tar_file(&b, name, '0', NULL, 0, NULL);
	}
	tar_end(&b);
	expect_refused("a package with too many entries", &b, "more than");

	/* A plain tar entry is fine: the checks above are not over-eager. */
	{
		struct pkg_device d = { "dev", pathf("hostile/out/dev") };
		struct pkg_error err = { { 0 } };

		tar_file(&b, "./dev", '0', data, 7, NULL);
		tar_end(&b);
		write_zst(pathf("plain.tar.zst"), &b);
		free(b.p);
		b = (struct buf){ 0 };
		is_int(pkg_extract(pathf("plain.tar.zst"), &d, 1, NULL, NULL, &err), 0,
		       "a hand-made ustar package with './dev' extracts");
		{
			char got[16] = { 0 };
			FILE *f = fopen(d.path, "re");
			size_t k = f ? fread(got, 1, sizeof got - 1, f) : 0;
			if (f)
				fclose(f);
			ok(k == 7 && !strcmp(got, "payload"), "its content is right");
		}
		unlink(d.path);

		/* The same behind a skippable frame (as some tools add metadata). */
		{
			static const uint8_t skip[12] = { 0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 'm', 'e', 't', 'a' };
			FILE *in = fopen(pathf("plain.tar.zst"), "rbe"), *out = fopen(pathf("skip.tar.zst"), "wbe");
			char cbuf[4096];
			size_t k;

			fwrite(skip, 1, sizeof skip, out);
			while ((k = fread(cbuf, 1, sizeof cbuf, in)) > 0)
				fwrite(cbuf, 1, k, out);
			fclose(in);
			fclose(out);
			is_int(pkg_extract(pathf("skip.tar.zst"), &d, 1, NULL, NULL, &err), 0,
			       "a package starting with a skippable frame extracts");
			ok(exists(d.path), "  and its device is written");
			unlink(d.path);
		}
	}
}

/* Copy the first LEN bytes of SRC to DST. */
static void copy_prefix(const char *src, const char *dst, off_t len)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	char *b = malloc((size_t)len);

	if (in < 0 || out < 0 || read(in, b, (size_t)len) != len || write(out, b, (size_t)len) != len)
		abort();
	free(b);
	close(in);
	close(out);
}

static void test_damaged(void)
{
	struct pkg_device d[] = {
		{ "state", pathf("dmg/state.bin") },
		{ "disk", pathf("dmg/disk.img") },
	};
	struct pkg_error err = { { 0 } };
	struct stat st;
	off_t cuts[4];
	int fd, r;

	mkdir(pathf("dmg"), 0755);
	/* An older file at the output path must survive a failed extraction. */
	{
		FILE *f = fopen(d[0].path, "we");
		fputs("old", f);
		fclose(f);
	}
	if (stat(pathf("pkg.tar.zst"), &st) < 0)
		abort();
	cuts[0] = 100;
	cuts[1] = st.st_size / 2;
	cuts[2] = st.st_size - 4;
	cuts[3] = st.st_size - 1;
	for (int i = 0; i < 4; i++) {
		copy_prefix(pathf("pkg.tar.zst"), pathf("cut.tar.zst"), cuts[i]);
		r = pkg_extract(pathf("cut.tar.zst"), d, 2, NULL, NULL, &err);
		ok(r < 0 && (strstr(err.msg, "truncated") || strstr(err.msg, "corrupt")),
		   "package cut at %lld of %lld bytes is refused (%s)", (long long)cuts[i],
		   (long long)st.st_size, err.msg);
		ok(!exists(d[1].path) && count_entries(pathf("dmg")) == 1, "  nothing written");
	}

	/* One flipped byte in the middle. */
	copy_prefix(pathf("pkg.tar.zst"), pathf("bad.tar.zst"), st.st_size);
	fd = open(pathf("bad.tar.zst"), O_RDWR | O_CLOEXEC);
	{
		uint8_t c;
		if (pread(fd, &c, 1, st.st_size / 2) != 1)
			abort();
		c ^= 0x40;
		if (pwrite(fd, &c, 1, st.st_size / 2) != 1)
			abort();
	}
	close(fd);
	r = pkg_extract(pathf("bad.tar.zst"), d, 2, NULL, NULL, &err);
	ok(r < 0, "a package with a flipped byte is refused (%s)", err.msg);
	ok(!exists(d[1].path) && count_entries(pathf("dmg")) == 1, "  nothing written");

	/* A complete zstd stream holding a tar cut inside an entry, or without its end. */
	{
		struct buf b = { 0 };
		uint8_t payload[3000];

		fill_random(payload, sizeof payload, 3);
		tar_file(&b, "state", '0', payload, sizeof payload, NULL);
		b.n -= 1024;
		write_zst(pathf("short.tar.zst"), &b);
		r = pkg_extract(pathf("short.tar.zst"), d, 1, NULL, NULL, &err);
		ok(r < 0, "a tar cut inside an entry is refused (%s)", err.msg);
		b.n = 0;
		tar_file(&b, "state", '0', payload, sizeof payload, NULL);
		write_zst(pathf("short.tar.zst"), &b);
		r = pkg_extract(pathf("short.tar.zst"), d, 1, NULL, NULL, &err);
		ok(r < 0 && strstr(err.msg, "end-of-archive"), "a tar without its end marker is refused (%s)",
		   err.msg);
		free(b.p);
	}
	{
		char got[8] = { 0 };
		FILE *f = fopen(d[0].path, "re");
		if (f) {
			if (fread(got, 1, 7, f) == 0)
				got[0] = 0;
			fclose(f);
		}
		is_str(got, "old", "the older output file was never touched");
	}

	/* Not a zstd stream at all. */
	r = pkg_extract(pathf("src/state.bin"), d, 1, NULL, NULL, &err);
	ok(r < 0 && strstr(err.msg, "not a zstd-compressed tar"), "a non-zstd file is refused (%s)",
	   err.msg);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof dir, "%s/test-pkg.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return 1;
	test_scan();
	test_round_trip();
	test_missing();
	test_hostile();
	test_damaged();
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			diag("cannot remove %s", dir);
	}
	return done_testing();
}
