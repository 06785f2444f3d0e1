/*
 * Typed-value converter between libxpc objects and the socket's object
 * encoding (RemoteXPC's, little-endian, 4-byte aligned, plus handles for
 * objects that cannot leave the process: type tag + u64le id).
 * docs/protocols/coredevice-bridge.md §3.
 */
#ifndef IOSMUX_XPCCONV_H
#define IOSMUX_XPCCONV_H

#include <stddef.h>
#include <stdint.h>
#include <xpc/xpc.h>

#include "iosmux.h"

/* Wire type tags. */
#define IOSMUX_T_NULL 0x00001000u
#define IOSMUX_T_BOOL 0x00002000u
#define IOSMUX_T_INT64 0x00003000u
#define IOSMUX_T_UINT64 0x00004000u
#define IOSMUX_T_DOUBLE 0x00005000u
#define IOSMUX_T_DATE 0x00007000u
#define IOSMUX_T_DATA 0x00008000u
#define IOSMUX_T_STRING 0x00009000u
#define IOSMUX_T_UUID 0x0000A000u
#define IOSMUX_T_FD 0x0000B000u
#define IOSMUX_T_SHMEM 0x0000C000u
#define IOSMUX_T_ARRAY 0x0000E000u
#define IOSMUX_T_DICT 0x0000F000u
#define IOSMUX_T_ERROR 0x00010000u
#define IOSMUX_T_CONNECTION 0x00011000u
#define IOSMUX_T_ENDPOINT 0x00012000u
#define IOSMUX_T_ACTIVITY 0x00019000u

#define IOSMUX_MAX_DEPTH 64

/* Appends obj's encoding to b. Returns 0, or -1 for an object that cannot
 * be encoded (a private libxpc type, a string that is not valid UTF-8 …):
 * the caller then passes the message through. */
int iosmux_xpc_encode(iosmux_buf *b, xpc_object_t obj);

/* Decodes exactly one object filling p[0:n]. Returns a new object (+1) or
 * NULL for malformed input or an unknown handle. */
xpc_object_t iosmux_xpc_decode(const uint8_t *p, size_t n);

/* The handle table: objects handed to iosmux by id. put retains obj and
 * returns its id (the same id for the same object); get borrows; release
 * drops the table's reference. */
uint64_t iosmux_handle_put(xpc_object_t obj);
xpc_object_t iosmux_handle_get(uint64_t id);
void iosmux_handle_release(uint64_t id);

#endif
