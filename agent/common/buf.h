/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Growable byte buffer. A zero-initialised struct mm_buf is a valid empty buffer; the buffer
 * owns its storage. Views (struct mm_span) borrow bytes they do not own.
 */
#ifndef MESHMASK_BUF_H
#define MESHMASK_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

struct mm_buf {
	char *data;
	size_t len;
	size_t cap;
};

struct mm_span {
	const char *base;
	size_t len;
};

/*
 * Gather a fixed-size header from a stream: move bytes from (*p, *len) into hdr until it holds
 * `want` (*have counts what it holds). True once it is complete.
 */
static inline bool mm_gather(unsigned char *hdr, size_t *have, size_t want,
			     const unsigned char **p, size_t *len)
{
	size_t k = want - *have < *len ? want - *have : *len;
	memcpy(hdr + *have, *p, k);
	*have += k;
	*p += k;
	*len -= k;
	return *have == want;
}

/* Make room for `extra` more bytes; 0 or -ENOMEM. */
static inline int mm_buf_reserve(struct mm_buf *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return 0;
	size_t need = b->len + extra;
	if (need < b->len)
		return -ENOMEM;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap = cap * 2 > cap ? cap * 2 : need;
	char *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

/* Append bytes (copied); 0 or -ENOMEM. */
static inline int mm_buf_append(struct mm_buf *b, const void *p, size_t n)
{
	if (!n)
		return 0;
	int r = mm_buf_reserve(b, n);
	if (r)
		return r;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static inline int mm_buf_putc(struct mm_buf *b, char c)
{
	return mm_buf_append(b, &c, 1);
}

static inline int mm_buf_puts(struct mm_buf *b, const char *s)
{
	return mm_buf_append(b, s, strlen(s));
}

/* Drop the first n bytes, keeping the rest. */
static inline void mm_buf_consume(struct mm_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

static inline void mm_buf_reset(struct mm_buf *b)
{
	b->len = 0;
}

static inline void mm_buf_free(struct mm_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

#endif
