/*
 * The panrpc wire format the original's agent speaks: one JSON object per
 * line, {"request":{...},"response":null} or {"request":null,"response":{...}}.
 * The guest only needs the call id (echoed back verbatim) and the function
 * name, so this is a small validating scanner rather than a JSON library:
 * the agent binary stays static and libc-only.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "guest/guest.h"

#define MAX_DEPTH 32

struct scan {
	const char *p, *end;
};

static void ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int put_utf8(char *out, size_t cap, size_t *o, unsigned cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | (cp >> 6));
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | (cp >> 12));
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | (cp >> 18));
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (out) {
		if (*o + n >= cap)
			return -E2BIG;
		memcpy(out + *o, b, n);
	}
	*o += n;
	return 0;
}

/* Scans a string at s->p; decodes it into out (may be NULL to only skip). */
static int string(struct scan *s, char *out, size_t cap)
{
	size_t o = 0;
	int r;

	if (s->p >= s->end || *s->p != '"')
		return -EINVAL;
	s->p++;
	while (s->p < s->end && *s->p != '"') {
		unsigned char c = (unsigned char)*s->p++;

		if (c < 0x20)
			return -EINVAL;
		if (c == '\\') {
			unsigned cp = 0;

			if (s->p >= s->end)
				return -EINVAL;
			c = (unsigned char)*s->p++;
			switch (c) {
			case '"':
			case '\\':
			case '/':
				cp = c;
				break;
			case 'b':
				cp = '\b';
				break;
			case 'f':
				cp = '\f';
				break;
			case 'n':
				cp = '\n';
				break;
			case 'r':
				cp = '\r';
				break;
			case 't':
				cp = '\t';
				break;
			case 'u':
				if (s->end - s->p < 4)
					return -EINVAL;
				for (int i = 0; i < 4; i++) {
					int h = hexval(s->p[i]);

					if (h < 0)
						return -EINVAL;
					cp = cp << 4 | (unsigned)h;
				}
				s->p += 4;
				if (cp == 0)
					return -EINVAL; /* a NUL would cut the C string */
				break;
			default:
				return -EINVAL;
			}
			r = put_utf8(out, cap, &o, cp);
		} else {
			if (out && o + 1 >= cap)
				return -E2BIG;
			if (out)
				out[o] = (char)c;
			o++;
			r = 0;
		}
		if (r < 0)
			return r;
	}
	if (s->p >= s->end)
		return -EINVAL;
	s->p++;
	if (out)
		out[o] = '\0';
	return 0;
}

static int value(struct scan *s, int depth);

static int literal(struct scan *s, const char *word)
{
	size_t l = strlen(word);

	if ((size_t)(s->end - s->p) < l || strncmp(s->p, word, l) != 0)
		return -EINVAL;
	s->p += l;
	return 0;
}

static int number(struct scan *s)
{
	const char *start = s->p;
	bool digits = false;

	if (s->p < s->end && *s->p == '-')
		s->p++;
	while (s->p < s->end && ((*s->p >= '0' && *s->p <= '9') || *s->p == '.' || *s->p == 'e' ||
	                         *s->p == 'E' || *s->p == '+' || *s->p == '-')) {
		if (*s->p >= '0' && *s->p <= '9')
			digits = true;
		s->p++;
	}
	return digits && s->p > start ? 0 : -EINVAL;
}

/* An object member's key and the colon after it; a long key is just one we do not know. */
static int member_key(struct scan *s, char *key, size_t len)
{
	int r = string(s, key, len);

	if (r == -E2BIG)
		key[0] = '\0', r = 0;
	if (r < 0)
		return r;
	ws(s);
	if (s->p >= s->end || *s->p != ':')
		return -EINVAL;
	s->p++;
	ws(s);
	return 0;
}

/* After a member of an object or array: 1 at its closing CLOSE, 0 at a comma (both consumed). */
static int after_member(struct scan *s, char close)
{
	ws(s);
	if (s->p >= s->end)
		return -EINVAL;
	if (*s->p != close && *s->p != ',')
		return -EINVAL;
	return *s->p++ == close ? 1 : 0;
}

static int container(struct scan *s, int depth, char close)
{
	bool first = true;
	int r;

	if (depth > MAX_DEPTH)
		return -E2BIG;
	s->p++;
	for (;;) {
		ws(s);
		if (s->p < s->end && *s->p == close && first) {
			s->p++;
			return 0;
		}
		if (close == '}') {
			if ((r = string(s, NULL, 0)) < 0)
				return r;
			ws(s);
			if (s->p >= s->end || *s->p != ':')
				return -EINVAL;
			s->p++;
		}
		if ((r = value(s, depth + 1)) < 0)
			return r;
		if ((r = after_member(s, close)) != 0)
			return r < 0 ? r : 0;
		first = false;
	}
}

static int value(struct scan *s, int depth)
{
	ws(s);
	if (s->p >= s->end)
		return -EINVAL;
	switch (*s->p) {
	case '"':
		return string(s, NULL, 0);
	case '{':
		return container(s, depth, '}');
	case '[':
		return container(s, depth, ']');
	case 't':
		return literal(s, "true");
	case 'f':
		return literal(s, "false");
	case 'n':
		return literal(s, "null");
	default:
		return number(s);
	}
}

/* The inner {"call":...,"function":...,"args":[...]} object. */
static int request_object(struct scan *s, struct guest_rpc_request *req, bool *have_call,
                          bool *have_fn)
{
	bool first = true;
	int r;

	s->p++;
	for (;;) {
		char key[32];
		const char *start;

		ws(s);
		if (first && s->p < s->end && *s->p == '}') {
			s->p++;
			return 0;
		}
		if ((r = member_key(s, key, sizeof(key))) < 0)
			return r;
		start = s->p;
		if (strcmp(key, "function") == 0 && s->p < s->end && *s->p == '"') {
			if ((r = string(s, req->function, sizeof(req->function))) < 0)
				return r;
			*have_fn = true;
		} else {
			if ((r = value(s, 2)) < 0)
				return r;
			if (strcmp(key, "call") == 0) {
				size_t l = (size_t)(s->p - start);

				if (l >= sizeof(req->call))
					return -E2BIG;
				memcpy(req->call, start, l);
				req->call[l] = '\0';
				*have_call = true;
			}
		}
		if ((r = after_member(s, '}')) != 0)
			return r < 0 ? r : 0;
		first = false;
	}
}

int guest_rpc_parse(const char *line, size_t len, struct guest_rpc_request *req)
{
	struct scan s = {.p = line, .end = line + len};
	bool is_request = false, have_call = false, have_fn = false, first = true;
	int r;

	memset(req, 0, sizeof(*req));
	ws(&s);
	if (s.p == s.end)
		return 0;
	if (*s.p != '{')
		return -EINVAL;
	s.p++;
	for (;;) {
		char key[32];

		ws(&s);
		if (first && s.p < s.end && *s.p == '}') {
			s.p++;
			break;
		}
		if ((r = member_key(&s, key, sizeof(key))) < 0)
			return r;
		if (strcmp(key, "request") == 0 && s.p < s.end && *s.p == '{') {
			if ((r = request_object(&s, req, &have_call, &have_fn)) < 0)
				return r;
			is_request = true;
		} else if ((r = value(&s, 1)) < 0)
			return r;
		if ((r = after_member(&s, '}')) < 0)
			return r;
		if (r)
			break;
		first = false;
	}
	ws(&s);
	if (s.p != s.end)
		return -EINVAL;
	if (!is_request)
		return 0;
	if (!have_call || !have_fn)
		return -EINVAL;
	return 1;
}

int guest_rpc_format_response(const char *call, const char *err, char *buf, size_t len)
{
	size_t o;
	int n;

	n = snprintf(buf, len,
	             "{\"request\":null,\"response\":{\"call\":%s,\"value\":null,\"err\":\"", call);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	o = (size_t)n;
	for (const unsigned char *p = (const unsigned char *)err; *p; p++) {
		char esc[8];
		size_t el;

		if (*p == '"' || *p == '\\')
			el = (size_t)snprintf(esc, sizeof(esc), "\\%c", *p);
		else if (*p == '\n')
			el = (size_t)snprintf(esc, sizeof(esc), "\\n");
		else if (*p < 0x20)
			el = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		else
			esc[0] = (char)*p, el = 1;
		if (o + el >= len)
			return -ENOSPC;
		memcpy(buf + o, esc, el);
		o += el;
	}
	n = snprintf(buf + o, len - o, "\"}}\n");
	if (n < 0 || (size_t)n >= len - o)
		return -ENOSPC;
	return (int)(o + (size_t)n);
}
