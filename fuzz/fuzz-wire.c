/*
 * libFuzzer target for the wire decoder: the input is what a hostile peer
 * could send after connecting: a hello, then frames. Every header, message
 * and block payload goes through the same decoders the engine uses; the
 * buffers are sized exactly, so ASan catches any read beyond a field.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/xfer/wire.h"

static struct xfer_coder *coder;
static uint8_t out[XFER_MAX_BLOCK_SIZE];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xfer_hello h;

	if (!coder)
		coder = xfer_coder_new();
	if (size >= XFER_HELLO_LEN) {
		(void)xfer_hello_decode(data, &h);
		data += XFER_HELLO_LEN;
		size -= XFER_HELLO_LEN;
	}
	while (size >= XFER_HDR_LEN) {
		struct xfer_hdr hdr;
		struct xfer_msg m;
		uint8_t raw[XFER_HDR_LEN];

		memcpy(raw, data, XFER_HDR_LEN);
		/* Make most headers pass their checksum so the fuzzer reaches the
		 * message decoders; the low bit of the type byte keeps some raw. */
		if (!(raw[5] & 0x40))
			xfer_put32(raw + 12, xfer_crc32c(0, raw, 12));
		data += XFER_HDR_LEN;
		size -= XFER_HDR_LEN;
		if (xfer_hdr_decode(raw, &hdr) < 0)
			continue;
		size_t len = hdr.len <= size ? hdr.len : size;
		/* An exact-size heap copy: any overread is an ASan report. */
		uint8_t *p = malloc(len ? len : 1);
		memcpy(p, data, len);
		if (xfer_msg_decode(&hdr, p, len, &m) == 0 && hdr.type == XFER_T_BLOCK)
			(void)xfer_block_decode(coder, &m, out, m.u.block.raw_len);
		free(p);
		data += len;
		size -= len;
	}
	return 0;
}
