/*
 * Test-only, in-memory stand-in for the libxpc object API declared in
 * sdk/xpc/xpc.h, so the dylib's converter (iosmux_xpcconv.c) can run on
 * Linux. Dictionaries keep insertion order (libxpc's own order is its hash
 * order; the socket does not depend on order). Connections and endpoints
 * are inert objects of their type.
 */
#include <stdlib.h>
#include <string.h>
#include <xpc/xpc.h>

struct _xpc_type_s {
	const char *name;
};
const struct _xpc_type_s _xpc_type_null = {"null"}, _xpc_type_bool = {"bool"}, _xpc_type_int64 = {"int64"},
			 _xpc_type_uint64 = {"uint64"}, _xpc_type_double = {"double"}, _xpc_type_date = {"date"},
			 _xpc_type_data = {"data"}, _xpc_type_string = {"string"}, _xpc_type_uuid = {"uuid"},
			 _xpc_type_array = {"array"}, _xpc_type_dictionary = {"dictionary"}, _xpc_type_fd = {"fd"},
			 _xpc_type_shmem = {"shmem"}, _xpc_type_error = {"error"},
			 _xpc_type_connection = {"connection"}, _xpc_type_endpoint = {"endpoint"},
			 _xpc_type_activity = {"activity"};

/* Blocks without the Blocks runtime: the classes of stack and global block
 * literals. The stub calls blocks synchronously and never copies them. */
void *_NSConcreteStackBlock[32];
void *_NSConcreteGlobalBlock[32];
/* __block variables call these when a block is copied or goes out of
 * scope; with no copies there is nothing to move or free. */
void _Block_object_assign(void *dst, const void *src, const int flags);
void _Block_object_dispose(const void *obj, const int flags);
void _Block_object_assign(void *dst, const void *src, const int flags)
{
	(void)dst, (void)src, (void)flags;
}
void _Block_object_dispose(const void *obj, const int flags) { (void)obj, (void)flags; }

struct obj {
	xpc_type_t type;
	int refs;
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double d;
		uint8_t uuid[16];
		struct {
			uint8_t *p;
			size_t n;
		} bytes; /* data, string (NUL-terminated) */
		struct {
			struct obj **v;
			size_t n, cap;
		} arr;
		struct {
			char **k;
			struct obj **v;
			size_t n, cap;
		} dict;
	};
};

static struct obj *alloc(xpc_type_t t)
{
	struct obj *o = calloc(1, sizeof *o);
	if (o == NULL)
		abort();
	o->type = t;
	o->refs = 1;
	return o;
}

xpc_type_t xpc_get_type(xpc_object_t x) { return ((struct obj *)x)->type; }

xpc_object_t xpc_retain(xpc_object_t x)
{
	((struct obj *)x)->refs++;
	return x;
}

void xpc_release(xpc_object_t x)
{
	struct obj *o = x;
	if (--o->refs > 0)
		return;
	if (o->type == XPC_TYPE_DATA || o->type == XPC_TYPE_STRING)
		free(o->bytes.p);
	if (o->type == XPC_TYPE_ARRAY) {
		for (size_t i = 0; i < o->arr.n; i++)
			xpc_release(o->arr.v[i]);
		free(o->arr.v);
	}
	if (o->type == XPC_TYPE_DICTIONARY) {
		for (size_t i = 0; i < o->dict.n; i++) {
			free(o->dict.k[i]);
			xpc_release(o->dict.v[i]);
		}
		free(o->dict.k);
		free(o->dict.v);
	}
	free(o);
}

xpc_object_t xpc_null_create(void) { return alloc(XPC_TYPE_NULL); }
xpc_object_t xpc_bool_create(bool v)
{
	struct obj *o = alloc(XPC_TYPE_BOOL);
	o->b = v;
	return o;
}
bool xpc_bool_get_value(xpc_object_t x) { return ((struct obj *)x)->b; }
xpc_object_t xpc_int64_create(int64_t v)
{
	struct obj *o = alloc(XPC_TYPE_INT64);
	o->i = v;
	return o;
}
int64_t xpc_int64_get_value(xpc_object_t x) { return ((struct obj *)x)->i; }
xpc_object_t xpc_uint64_create(uint64_t v)
{
	struct obj *o = alloc(XPC_TYPE_UINT64);
	o->u = v;
	return o;
}
uint64_t xpc_uint64_get_value(xpc_object_t x) { return ((struct obj *)x)->u; }
xpc_object_t xpc_double_create(double v)
{
	struct obj *o = alloc(XPC_TYPE_DOUBLE);
	o->d = v;
	return o;
}
double xpc_double_get_value(xpc_object_t x) { return ((struct obj *)x)->d; }
xpc_object_t xpc_date_create(int64_t v)
{
	struct obj *o = alloc(XPC_TYPE_DATE);
	o->i = v;
	return o;
}
int64_t xpc_date_get_value(xpc_object_t x) { return ((struct obj *)x)->i; }

static xpc_object_t bytes(xpc_type_t t, const void *p, size_t n, size_t extra)
{
	struct obj *o = alloc(t);
	o->bytes.p = calloc(1, n + extra + 1);
	if (o->bytes.p == NULL)
		abort();
	if (n)
		memcpy(o->bytes.p, p, n);
	o->bytes.n = n;
	return o;
}
xpc_object_t xpc_data_create(const void *p, size_t n) { return bytes(XPC_TYPE_DATA, p, n, 0); }
const void *xpc_data_get_bytes_ptr(xpc_object_t x) { return ((struct obj *)x)->bytes.p; }
size_t xpc_data_get_length(xpc_object_t x) { return ((struct obj *)x)->bytes.n; }
xpc_object_t xpc_string_create(const char *s) { return bytes(XPC_TYPE_STRING, s, strlen(s), 1); }
size_t xpc_string_get_length(xpc_object_t x) { return ((struct obj *)x)->bytes.n; }
const char *xpc_string_get_string_ptr(xpc_object_t x) { return (const char *)((struct obj *)x)->bytes.p; }
xpc_object_t xpc_uuid_create(const unsigned char *u)
{
	struct obj *o = alloc(XPC_TYPE_UUID);
	memcpy(o->uuid, u, 16);
	return o;
}
const uint8_t *xpc_uuid_get_bytes(xpc_object_t x) { return ((struct obj *)x)->uuid; }

xpc_object_t xpc_array_create(xpc_object_t *objects, size_t count)
{
	struct obj *o = alloc(XPC_TYPE_ARRAY);
	for (size_t i = 0; i < count; i++)
		xpc_array_append_value(o, objects[i]);
	return o;
}
void xpc_array_append_value(xpc_object_t x, xpc_object_t v)
{
	struct obj *o = x;
	if (o->arr.n == o->arr.cap) {
		o->arr.cap = o->arr.cap ? o->arr.cap * 2 : 4;
		o->arr.v = realloc(o->arr.v, o->arr.cap * sizeof *o->arr.v);
		if (o->arr.v == NULL)
			abort();
	}
	o->arr.v[o->arr.n++] = xpc_retain(v);
}
size_t xpc_array_get_count(xpc_object_t x) { return ((struct obj *)x)->arr.n; }
xpc_object_t xpc_array_get_value(xpc_object_t x, size_t i)
{
	struct obj *o = x;
	return i < o->arr.n ? o->arr.v[i] : NULL;
}
bool xpc_array_apply(xpc_object_t x, xpc_array_applier_t f)
{
	struct obj *o = x;
	for (size_t i = 0; i < o->arr.n; i++)
		if (!f(i, o->arr.v[i]))
			return false;
	return true;
}

xpc_object_t xpc_dictionary_create(const char *const *keys, const xpc_object_t *values, size_t count)
{
	struct obj *o = alloc(XPC_TYPE_DICTIONARY);
	for (size_t i = 0; i < count; i++)
		xpc_dictionary_set_value(o, keys[i], values[i]);
	return o;
}
xpc_object_t xpc_dictionary_create_reply(xpc_object_t original)
{
	(void)original;
	return xpc_dictionary_create(NULL, NULL, 0);
}
void xpc_dictionary_set_value(xpc_object_t x, const char *key, xpc_object_t v)
{
	struct obj *o = x;
	for (size_t i = 0; i < o->dict.n; i++) {
		if (strcmp(o->dict.k[i], key) == 0) {
			xpc_release(o->dict.v[i]);
			if (v == NULL) {
				free(o->dict.k[i]);
				memmove(&o->dict.k[i], &o->dict.k[i + 1], (o->dict.n - i - 1) * sizeof *o->dict.k);
				memmove(&o->dict.v[i], &o->dict.v[i + 1], (o->dict.n - i - 1) * sizeof *o->dict.v);
				o->dict.n--;
			} else {
				o->dict.v[i] = xpc_retain(v);
			}
			return;
		}
	}
	if (v == NULL)
		return;
	if (o->dict.n == o->dict.cap) {
		o->dict.cap = o->dict.cap ? o->dict.cap * 2 : 4;
		o->dict.k = realloc(o->dict.k, o->dict.cap * sizeof *o->dict.k);
		o->dict.v = realloc(o->dict.v, o->dict.cap * sizeof *o->dict.v);
		if (o->dict.k == NULL || o->dict.v == NULL)
			abort();
	}
	size_t kl = strlen(key) + 1;
	o->dict.k[o->dict.n] = malloc(kl);
	if (o->dict.k[o->dict.n] == NULL)
		abort();
	memcpy(o->dict.k[o->dict.n], key, kl);
	o->dict.v[o->dict.n++] = xpc_retain(v);
}
xpc_object_t xpc_dictionary_get_value(xpc_object_t x, const char *key)
{
	struct obj *o = x;
	for (size_t i = 0; i < o->dict.n; i++)
		if (strcmp(o->dict.k[i], key) == 0)
			return o->dict.v[i];
	return NULL;
}
size_t xpc_dictionary_get_count(xpc_object_t x) { return ((struct obj *)x)->dict.n; }
bool xpc_dictionary_apply(xpc_object_t x, xpc_dictionary_applier_t f)
{
	struct obj *o = x;
	for (size_t i = 0; i < o->dict.n; i++)
		if (!f(o->dict.k[i], o->dict.v[i]))
			return false;
	return true;
}
const char *xpc_dictionary_get_string(xpc_object_t x, const char *key)
{
	xpc_object_t v = xpc_dictionary_get_value(x, key);
	return v != NULL && xpc_get_type(v) == XPC_TYPE_STRING ? xpc_string_get_string_ptr(v) : NULL;
}

/* Inert objects of the process-local types, for handle tests. */
xpc_object_t iosmux_stub_create(xpc_type_t t) { return alloc(t); }
