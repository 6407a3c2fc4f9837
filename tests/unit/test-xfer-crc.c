/*
 * The CRC32C fast paths (zero pages skipped by a register shift, three
 * interleaved hardware streams per page) must agree bit for bit with the
 * plain bitwise definition, whatever the mix of pages, lengths and splits.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xfer/wire.h"
#include "tests/tap.h"

static uint32_t crc_ref(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

int main(void)
{
	enum { PAGES = 40, SZ = PAGES * 4096 + 4096 };
	uint8_t *buf = calloc(1, SZ);
	int bad = 0, checked = 0;

	/* Pages: zero, random, text-like, zero but for one byte at either end. */
	for (int pg = 0; pg < PAGES; pg++) {
		uint8_t *p = buf + (size_t)pg * 4096;
		switch (pg % 5) {
		case 1:
			for (int i = 0; i < 4096; i++)
				p[i] = (uint8_t)next_rand();
			break;
		case 2:
			for (int i = 0; i < 4096; i++)
				p[i] = (uint8_t)("drafter "[i % 8]);
			break;
		case 3:
			p[4095] = 1;
			break;
		case 4:
			if (pg % 2)
				p[0] = 0x80;
			break;
		}
	}
	is_int(xfer_crc32c(0, "123456789", 9), 0xE3069283u, "check value");
	is_int(xfer_crc32c(0, buf, 0), 0, "empty buffer");

	/* Whole buffers at odd offsets and lengths, so pages straddle. */
	for (int t = 0; t < 300; t++) {
		size_t off = next_rand() % 8192, len = next_rand() % (SZ - off);
		if (t % 3 == 0)
			len = (len / 4096) * 4096;
		bad += xfer_crc32c(0, buf + off, len) != crc_ref(0, buf + off, len);
		checked++;
	}
	is_int(bad, 0, "fast CRC32C equals the bitwise definition on %d mixed buffers", checked);

	/* Split computations and a non-zero seed. */
	bad = 0;
	for (int t = 0; t < 100; t++) {
		size_t len = 4096 * 8 + next_rand() % 4096, cut = next_rand() % len;
		uint32_t whole = crc_ref(0x12345678u, buf, len);
		uint32_t split = xfer_crc32c(xfer_crc32c(0x12345678u, buf, cut), buf + cut, len - cut);
		bad += whole != split;
	}
	is_int(bad, 0, "split computations with a seed agree");

	/* All-zero blocks of every power-of-two size a device may use. */
	bad = 0;
	uint8_t *z = calloc(1, 1u << 20);
	for (uint32_t n = 512; n <= (1u << 20); n <<= 1)
		bad += xfer_crc32c(0, z, n) != crc_ref(0, z, n);
	is_int(bad, 0, "all-zero blocks from 512 B to 1 MiB");

	/* A block that is zero but for one bit in a single page. */
	z[(1u << 19) + 17] = 4;
	is_int(xfer_crc32c(0, z, 1u << 20), crc_ref(0, z, 1u << 20), "one set bit in a zero MiB");
	z[(1u << 19) + 17] = 0;
	free(z);
	free(buf);
	done_testing();
}
