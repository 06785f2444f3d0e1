/*
 * Converter between libxpc objects and the socket encoding.
 * docs/protocols/coredevice-bridge.md §3. Every length is checked
 * against the bytes left; nothing is read past n; nesting is bounded.
 */
#include "iosmux_xpcconv.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void iosmux_buf_put(iosmux_buf *b, const void *p, size_t n)
{
	if (b->err || n == 0)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		uint8_t *np = realloc(b->p, cap);
		if (np == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void iosmux_buf_free(iosmux_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
	b->err = 0;
}

static void put_u32(iosmux_buf *b, uint32_t v)
{
	uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	iosmux_buf_put(b, x, 4);
}

static void put_u64(iosmux_buf *b, uint64_t v)
{
	put_u32(b, (uint32_t)v);
	put_u32(b, (uint32_t)(v >> 32));
}

static void put_zeros(iosmux_buf *b, size_t n)
{
	static const uint8_t z[4];
	iosmux_buf_put(b, z, n);
}

static size_t pad4(size_t n) { return (4 - n % 4) % 4; }

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

/* Strict UTF-8 (no overlongs, no surrogates), as the Go side requires. */
static int valid_utf8(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i <= k)
			return 0;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += k + 1;
	}
	return 1;
}

/* --- handle table ------------------------------------------------------ */

struct handle {
	uint64_t id;
	xpc_object_t obj;
};

static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;
static struct handle *handles;
static size_t nhandles, caphandles;
static uint64_t next_handle = 1;

uint64_t iosmux_handle_put(xpc_object_t obj)
{
	uint64_t id = 0;
	pthread_mutex_lock(&handles_mu);
	for (size_t i = 0; i < nhandles; i++) {
		if (handles[i].obj == obj) {
			id = handles[i].id;
			goto out;
		}
	}
	if (nhandles == caphandles) {
		size_t cap = caphandles ? caphandles * 2 : 16;
		struct handle *nh = realloc(handles, cap * sizeof *nh);
		if (nh == NULL)
			goto out;
		handles = nh;
		caphandles = cap;
	}
	id = next_handle++;
	handles[nhandles].id = id;
	handles[nhandles].obj = xpc_retain(obj);
	nhandles++;
out:
	pthread_mutex_unlock(&handles_mu);
	return id;
}

xpc_object_t iosmux_handle_get(uint64_t id)
{
	xpc_object_t obj = NULL;
	pthread_mutex_lock(&handles_mu);
	for (size_t i = 0; i < nhandles; i++) {
		if (handles[i].id == id) {
			obj = handles[i].obj;
			break;
		}
	}
	pthread_mutex_unlock(&handles_mu);
	return obj;
}

void iosmux_handle_release(uint64_t id)
{
	xpc_object_t obj = NULL;
	pthread_mutex_lock(&handles_mu);
	for (size_t i = 0; i < nhandles; i++) {
		if (handles[i].id == id) {
			obj = handles[i].obj;
			handles[i] = handles[--nhandles];
			break;
		}
	}
	pthread_mutex_unlock(&handles_mu);
	if (obj != NULL)
		xpc_release(obj);
}

/* --- encoder ----------------------------------------------------------- */

static uint32_t handle_tag(xpc_type_t t)
{
	if (t == XPC_TYPE_ENDPOINT)
		return IOSMUX_T_ENDPOINT;
	if (t == XPC_TYPE_CONNECTION)
		return IOSMUX_T_CONNECTION;
	if (t == XPC_TYPE_FD)
		return IOSMUX_T_FD;
	if (t == XPC_TYPE_SHMEM)
		return IOSMUX_T_SHMEM;
	if (t == XPC_TYPE_ERROR)
		return IOSMUX_T_ERROR;
	if (t == XPC_TYPE_ACTIVITY)
		return IOSMUX_T_ACTIVITY;
	return 0;
}

static int encode(iosmux_buf *b, xpc_object_t obj, int depth);

/* put_key writes a dictionary key: NUL-terminated, zero-padded to 4. */
static int put_key(iosmux_buf *b, const char *key)
{
	size_t n = strlen(key);
	if (!valid_utf8((const uint8_t *)key, n))
		return -1;
	iosmux_buf_put(b, key, n + 1);
	put_zeros(b, pad4(n + 1));
	return 0;
}

/* patch_len fills the container length at at with the bytes after it. */
static int patch_len(iosmux_buf *b, size_t at)
{
	if (b->err)
		return -1;
	size_t n = b->len - at - 4;
	if (n > UINT32_MAX)
		return -1;
	b->p[at] = (uint8_t)n;
	b->p[at + 1] = (uint8_t)(n >> 8);
	b->p[at + 2] = (uint8_t)(n >> 16);
	b->p[at + 3] = (uint8_t)(n >> 24);
	return 0;
}

static int encode(iosmux_buf *b, xpc_object_t obj, int depth)
{
	if (obj == NULL)
		return -1;
	xpc_type_t t = xpc_get_type(obj);
	if (t == XPC_TYPE_NULL) {
		put_u32(b, IOSMUX_T_NULL);
	} else if (t == XPC_TYPE_BOOL) {
		put_u32(b, IOSMUX_T_BOOL);
		put_u32(b, xpc_bool_get_value(obj) ? 1 : 0);
	} else if (t == XPC_TYPE_INT64) {
		put_u32(b, IOSMUX_T_INT64);
		put_u64(b, (uint64_t)xpc_int64_get_value(obj));
	} else if (t == XPC_TYPE_UINT64) {
		put_u32(b, IOSMUX_T_UINT64);
		put_u64(b, xpc_uint64_get_value(obj));
	} else if (t == XPC_TYPE_DOUBLE) {
		double d = xpc_double_get_value(obj);
		uint64_t bits;
		memcpy(&bits, &d, 8);
		put_u32(b, IOSMUX_T_DOUBLE);
		put_u64(b, bits);
	} else if (t == XPC_TYPE_DATE) {
		put_u32(b, IOSMUX_T_DATE);
		put_u64(b, (uint64_t)xpc_date_get_value(obj));
	} else if (t == XPC_TYPE_DATA) {
		size_t n = xpc_data_get_length(obj);
		if (n > UINT32_MAX)
			return -1;
		put_u32(b, IOSMUX_T_DATA);
		put_u32(b, (uint32_t)n);
		iosmux_buf_put(b, xpc_data_get_bytes_ptr(obj), n);
		put_zeros(b, pad4(n));
	} else if (t == XPC_TYPE_STRING) {
		const char *s = xpc_string_get_string_ptr(obj);
		size_t n = xpc_string_get_length(obj);
		if (s == NULL || n >= UINT32_MAX || memchr(s, 0, n) != NULL || !valid_utf8((const uint8_t *)s, n))
			return -1;
		put_u32(b, IOSMUX_T_STRING);
		put_u32(b, (uint32_t)(n + 1));
		iosmux_buf_put(b, s, n);
		put_zeros(b, 1 + pad4(n + 1));
	} else if (t == XPC_TYPE_UUID) {
		const uint8_t *u = xpc_uuid_get_bytes(obj);
		if (u == NULL)
			return -1;
		put_u32(b, IOSMUX_T_UUID);
		iosmux_buf_put(b, u, 16);
	} else if (t == XPC_TYPE_ARRAY) {
		if (depth >= IOSMUX_MAX_DEPTH)
			return -1;
		size_t count = xpc_array_get_count(obj);
		put_u32(b, IOSMUX_T_ARRAY);
		size_t at = b->len;
		put_u32(b, 0);
		put_u32(b, (uint32_t)count);
		for (size_t i = 0; i < count; i++) {
			if (encode(b, xpc_array_get_value(obj, i), depth + 1) != 0)
				return -1;
		}
		return patch_len(b, at);
	} else if (t == XPC_TYPE_DICTIONARY) {
		if (depth >= IOSMUX_MAX_DEPTH)
			return -1;
		put_u32(b, IOSMUX_T_DICT);
		size_t at = b->len;
		put_u32(b, 0);
		put_u32(b, (uint32_t)xpc_dictionary_get_count(obj));
		__block int failed = 0;
		xpc_dictionary_apply(obj, ^bool(const char *key, xpc_object_t value) {
			if (put_key(b, key) != 0 || encode(b, value, depth + 1) != 0) {
				failed = 1;
				return false;
			}
			return true;
		});
		if (failed)
			return -1;
		return patch_len(b, at);
	} else {
		uint32_t tag = handle_tag(t);
		if (tag == 0)
			return -1; /* a private type: cannot be named, pass through */
		uint64_t id = iosmux_handle_put(obj);
		if (id == 0)
			return -1;
		put_u32(b, tag);
		put_u64(b, id);
	}
	return b->err ? -1 : 0;
}

int iosmux_xpc_encode(iosmux_buf *b, xpc_object_t obj)
{
	size_t start = b->len;
	if (encode(b, obj, 0) != 0 || b->err) {
		if (!b->err)
			b->len = start;
		return -1;
	}
	return 0;
}

/* --- decoder ----------------------------------------------------------- */

struct dec {
	const uint8_t *p;
};

static xpc_object_t decode(struct dec *d, size_t *pos, size_t end, int depth);

/* text reads a NUL-terminated UTF-8 string in p[pos:end]; its length
 * (without the NUL) goes to *n. */
static int text(struct dec *d, size_t pos, size_t end, size_t *n)
{
	const uint8_t *s = d->p + pos;
	const uint8_t *z = memchr(s, 0, end - pos);
	if (z == NULL)
		return -1;
	*n = (size_t)(z - s);
	return valid_utf8(s, *n) ? 0 : -1;
}

static xpc_object_t decode(struct dec *d, size_t *pos, size_t end, int depth)
{
	size_t p = *pos;
	if (end - p < 4)
		return NULL;
	uint32_t tag = get_u32(d->p + p);
	p += 4;
	xpc_object_t obj = NULL;
	switch (tag) {
	case IOSMUX_T_NULL:
		obj = xpc_null_create();
		break;
	case IOSMUX_T_BOOL:
		if (end - p < 4)
			return NULL;
		obj = xpc_bool_create(d->p[p] != 0);
		p += 4;
		break;
	case IOSMUX_T_INT64:
	case IOSMUX_T_UINT64:
	case IOSMUX_T_DOUBLE:
	case IOSMUX_T_DATE: {
		if (end - p < 8)
			return NULL;
		uint64_t v = get_u64(d->p + p);
		p += 8;
		if (tag == IOSMUX_T_INT64) {
			obj = xpc_int64_create((int64_t)v);
		} else if (tag == IOSMUX_T_UINT64) {
			obj = xpc_uint64_create(v);
		} else if (tag == IOSMUX_T_DATE) {
			obj = xpc_date_create((int64_t)v);
		} else {
			double f;
			memcpy(&f, &v, 8);
			obj = xpc_double_create(f);
		}
		break;
	}
	case IOSMUX_T_DATA:
	case IOSMUX_T_STRING: {
		if (end - p < 4)
			return NULL;
		size_t n = get_u32(d->p + p);
		p += 4;
		if (n > end - p || pad4(n) > end - p - n)
			return NULL;
		if (tag == IOSMUX_T_DATA) {
			obj = xpc_data_create(d->p + p, n);
		} else {
			size_t sl;
			if (n == 0 || text(d, p, p + n, &sl) != 0 || sl != n - 1)
				return NULL;
			obj = xpc_string_create((const char *)d->p + p);
		}
		p += n + pad4(n);
		break;
	}
	case IOSMUX_T_UUID:
		if (end - p < 16)
			return NULL;
		obj = xpc_uuid_create(d->p + p);
		p += 16;
		break;
	case IOSMUX_T_ARRAY: {
		if (depth >= IOSMUX_MAX_DEPTH || end - p < 8)
			return NULL;
		size_t len = get_u32(d->p + p), count = get_u32(d->p + p + 4);
		if (len < 4 || len > end - p - 4)
			return NULL;
		size_t wend = p + 4 + len;
		p += 8;
		if (count > (wend - p) / 4)
			return NULL;
		obj = xpc_array_create(NULL, 0);
		for (size_t i = 0; i < count; i++) {
			xpc_object_t e = decode(d, &p, wend, depth + 1);
			if (e == NULL) {
				xpc_release(obj);
				return NULL;
			}
			xpc_array_append_value(obj, e);
			xpc_release(e);
		}
		if (p != wend) {
			xpc_release(obj);
			return NULL;
		}
		break;
	}
	case IOSMUX_T_DICT: {
		if (depth >= IOSMUX_MAX_DEPTH || end - p < 8)
			return NULL;
		size_t len = get_u32(d->p + p), count = get_u32(d->p + p + 4);
		if (len < 4 || len > end - p - 4)
			return NULL;
		size_t wend = p + 4 + len;
		p += 8;
		if (count > (wend - p) / 8)
			return NULL;
		obj = xpc_dictionary_create(NULL, NULL, 0);
		for (size_t i = 0; i < count; i++) {
			size_t kl;
			if (p >= wend || text(d, p, wend, &kl) != 0 || pad4(kl + 1) > wend - p - kl - 1) {
				xpc_release(obj);
				return NULL;
			}
			const char *key = (const char *)d->p + p;
			p += kl + 1 + pad4(kl + 1);
			xpc_object_t v = decode(d, &p, wend, depth + 1);
			if (v == NULL) {
				xpc_release(obj);
				return NULL;
			}
			xpc_dictionary_set_value(obj, key, v);
			xpc_release(v);
		}
		if (p != wend) {
			xpc_release(obj);
			return NULL;
		}
		break;
	}
	case IOSMUX_T_ENDPOINT:
	case IOSMUX_T_CONNECTION:
	case IOSMUX_T_FD:
	case IOSMUX_T_SHMEM:
	case IOSMUX_T_ERROR:
	case IOSMUX_T_ACTIVITY: {
		if (end - p < 8)
			return NULL;
		xpc_object_t h = iosmux_handle_get(get_u64(d->p + p));
		/* The handle must name an object of the tag's type. */
		if (h == NULL || handle_tag(xpc_get_type(h)) != tag)
			return NULL;
		obj = xpc_retain(h);
		p += 8;
		break;
	}
	default:
		return NULL;
	}
	*pos = p;
	return obj;
}

xpc_object_t iosmux_xpc_decode(const uint8_t *p, size_t n)
{
	struct dec d = {p};
	size_t pos = 0;
	xpc_object_t obj = decode(&d, &pos, n, 0);
	if (obj != NULL && pos != n) {
		xpc_release(obj);
		return NULL;
	}
	return obj;
}
