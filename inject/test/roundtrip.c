/*
 * Test harness for the converter: reads values framed as u32le length +
 * bytes on stdin and writes each back the same way after decoding it into
 * libxpc objects (xpcstub.c) and encoding them again; a value that fails
 * comes back as length 0xFFFFFFFF. With argument "native" it instead writes
 * the encodings of objects built with the libxpc API. Handles 1–3 are an
 * endpoint, a connection and an fd object created at start.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "iosmux_xpcconv.h"

xpc_object_t iosmux_stub_create(xpc_type_t t);

static void out(const uint8_t *p, uint32_t n)
{
	uint8_t h[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
	fwrite(h, 1, 4, stdout);
	if (n != 0xffffffffu)
		fwrite(p, 1, n, stdout);
}

static void emit(xpc_object_t o)
{
	iosmux_buf b = {0};
	if (iosmux_xpc_encode(&b, o) != 0)
		out(NULL, 0xffffffffu);
	else
		out(b.p, (uint32_t)b.len);
	iosmux_buf_free(&b);
	xpc_release(o);
}

/* native builds one object of every kind and some nestings, in the order
 * dylib/inject_test.go expects. */
static void native(xpc_object_t endpoint)
{
	static const uint8_t u[16] = {0x6f, 0x1d, 0x0e, 0x8a, 0x3b, 0x2c, 0x4d, 0x5e, 0x8f, 0x90, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6};
	emit(xpc_null_create());
	emit(xpc_bool_create(true));
	emit(xpc_bool_create(false));
	emit(xpc_int64_create(-1));
	emit(xpc_uint64_create(UINT64_MAX));
	emit(xpc_double_create(0.5));
	emit(xpc_date_create(1700000000123456789));
	emit(xpc_data_create("\x01\x02\x03", 3));
	emit(xpc_string_create("iPhone ✓"));
	emit(xpc_uuid_create(u));
	emit(xpc_array_create(NULL, 0));
	emit(xpc_dictionary_create(NULL, NULL, 0));
	emit(xpc_retain(endpoint));

	xpc_object_t d = xpc_dictionary_create(NULL, NULL, 0);
	xpc_object_t a = xpc_array_create(NULL, 0);
	xpc_object_t i = xpc_int64_create(7), s = xpc_string_create("x"), e = xpc_dictionary_create(NULL, NULL, 0);
	xpc_array_append_value(a, i);
	xpc_array_append_value(a, s);
	xpc_array_append_value(a, e);
	xpc_dictionary_set_value(d, "CoreDevice.actionIdentifier", s);
	xpc_dictionary_set_value(d, "list", a);
	xpc_dictionary_set_value(d, "ep", endpoint);
	xpc_release(i);
	xpc_release(s);
	xpc_release(e);
	xpc_release(a);
	emit(d);
}

int main(int argc, char **argv)
{
	xpc_object_t ep = iosmux_stub_create(XPC_TYPE_ENDPOINT);
	xpc_object_t conn = iosmux_stub_create(XPC_TYPE_CONNECTION);
	xpc_object_t fd = iosmux_stub_create(XPC_TYPE_FD);
	if (iosmux_handle_put(ep) != 1 || iosmux_handle_put(conn) != 2 || iosmux_handle_put(fd) != 3)
		return 2;
	if (argc > 1 && strcmp(argv[1], "native") == 0) {
		native(ep);
	} else {
		uint8_t h[4];
		while (fread(h, 1, 4, stdin) == 4) {
			uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
			uint8_t *p = malloc(n ? n : 1);
			if (p == NULL || fread(p, 1, n, stdin) != n)
				return 3;
			xpc_object_t o = iosmux_xpc_decode(p, n);
			free(p);
			if (o == NULL)
				out(NULL, 0xffffffffu);
			else
				emit(o);
		}
	}
	iosmux_handle_release(1);
	iosmux_handle_release(2);
	iosmux_handle_release(3);
	xpc_release(ep);
	xpc_release(conn);
	xpc_release(fd);
	fflush(stdout);
	return 0;
}
