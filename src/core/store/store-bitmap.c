/*
 * Plain bitmaps of block numbers: the results the store hands out (dirty
 * sets, overlay contents) and the state it keeps under a lock.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/store/store-internal.h"

static uint64_t words_for(uint64_t nbits)
{
	return (nbits + 63) / 64;
}

int store_bitmap_init(struct store_bitmap *b, uint64_t nbits)
{
	uint64_t n = words_for(nbits);

	b->nbits = 0;
	b->words = NULL;
	if (n > SIZE_MAX / sizeof(uint64_t))
		return -ENOMEM;
	b->words = calloc(n ? n : 1, sizeof(uint64_t));
	if (!b->words)
		return -ENOMEM;
	b->nbits = nbits;
	return 0;
}

void store_bitmap_free(struct store_bitmap *b)
{
	if (!b)
		return;
	free(b->words);
	b->words = NULL;
	b->nbits = 0;
}

void store_bitmap_set(struct store_bitmap *b, uint64_t bit)
{
	if (bit < b->nbits)
		b->words[bit / 64] |= 1ull << (bit % 64);
}

void store_bitmap_clear(struct store_bitmap *b, uint64_t bit)
{
	if (bit < b->nbits)
		b->words[bit / 64] &= ~(1ull << (bit % 64));
}

bool store_bitmap_test(const struct store_bitmap *b, uint64_t bit)
{
	return bit < b->nbits && (b->words[bit / 64] >> (bit % 64)) & 1;
}

void store_bitmap_set_all(struct store_bitmap *b)
{
	uint64_t n = words_for(b->nbits);

	if (!n)
		return;
	memset(b->words, 0xff, n * sizeof(uint64_t));
	if (b->nbits % 64)
		b->words[n - 1] = (1ull << (b->nbits % 64)) - 1;
}

void store_bitmap_clear_all(struct store_bitmap *b)
{
	uint64_t n = words_for(b->nbits);

	if (n)
		memset(b->words, 0, n * sizeof(uint64_t));
}

uint64_t store_bitmap_count(const struct store_bitmap *b)
{
	uint64_t n = words_for(b->nbits), c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(b->words[i]);
	return c;
}

uint64_t store_bitmap_next(const struct store_bitmap *b, uint64_t from)
{
	uint64_t n = words_for(b->nbits);

	if (from >= b->nbits)
		return UINT64_MAX;
	uint64_t w = from / 64;
	uint64_t word = b->words[w] & (~0ull << (from % 64));
	for (;;) {
		if (word) {
			uint64_t bit = w * 64 + (uint64_t)__builtin_ctzll(word);
			return bit < b->nbits ? bit : UINT64_MAX;
		}
		if (++w >= n)
			return UINT64_MAX;
		word = b->words[w];
	}
}

int store_bitmap_to_list(const struct store_bitmap *b, uint64_t **list, size_t *n)
{
	uint64_t count = store_bitmap_count(b);

	*list = NULL;
	*n = 0;
	if (!count)
		return 0;
	if (count > SIZE_MAX / sizeof(uint64_t))
		return -ENOMEM;
	uint64_t *l = malloc(count * sizeof(uint64_t));
	if (!l)
		return -ENOMEM;
	size_t i = 0;
	for (uint64_t bit = store_bitmap_next(b, 0); bit != UINT64_MAX;
	     bit = store_bitmap_next(b, bit + 1))
		l[i++] = bit;
	*list = l;
	*n = i;
	return 0;
}

uint64_t store_fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}
