/*
 * iosmux dylib inside CoreDeviceService: shared declarations.
 *
 * The dylib is a thin, fail-safe bridge. It listens on a Unix socket for
 * iosmux (docs/protocols/coredevice-bridge.md), registers the devices iosmux
 * attaches, and offers iosmux only the Mercury actions on its allow-list for
 * those devices; every other message, and every failure, runs CDS's own
 * code. It holds no CoreDevice schema knowledge beyond the envelope keys it
 * reads for that decision.
 */
#ifndef IOSMUX_H
#define IOSMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xpc/xpc.h>

#define IOSMUX_DYLIB_VERSION "0.1.0"
#define IOSMUX_PROTOCOL 1
#define IOSMUX_FRAME_VERSION 1
#define IOSMUX_FRAME_HEADER 16
#define IOSMUX_MAX_FRAME (16u << 20)
#define IOSMUX_WAIT_MS 1500
/* md_proxy answers from pushed data only while it is this fresh with the
 * socket down. */
#define IOSMUX_STALE_SECONDS 30

/* Message kinds (docs/protocols/coredevice-bridge.md §4). */
enum iosmux_kind {
	IOSMUX_HELLO = 0x01,
	IOSMUX_HELLO_ACK = 0x02,
	IOSMUX_DEVICE_ATTACH = 0x10,
	IOSMUX_DEVICE_UPDATE = 0x11,
	IOSMUX_DEVICE_DETACH = 0x12,
	IOSMUX_ACTION_REQUEST = 0x20,
	IOSMUX_ACTION_RESPONSE = 0x21,
	IOSMUX_SIDECHANNEL_SEND = 0x30,
	IOSMUX_BROADCAST_EVENT = 0x31,
	IOSMUX_RELEASE_HANDLE = 0x32,
	IOSMUX_LOG = 0x40,
	IOSMUX_ERROR = 0x7f,
};

#define IOSMUX_FLAG_RESPONSE 1

/* The Mercury envelope keys the hook reads. */
#define IOSMUX_KEY_ACTION "CoreDevice.actionIdentifier"
#define IOSMUX_KEY_DEVICE "CoreDevice.deviceIdentifier"

/* Growable byte buffer; err sticks after an allocation failure. */
typedef struct {
	uint8_t *p;
	size_t len, cap;
	int err;
} iosmux_buf;

void iosmux_buf_put(iosmux_buf *b, const void *p, size_t n);
void iosmux_buf_free(iosmux_buf *b);

/* Logging: stderr, and a LOG frame to iosmux while connected. */
void iosmux_log(const char *level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* iosmux_main.m: the connection to iosmux. */
bool iosmux_connected(void);
/* Sends ACTION_REQUEST{request} and waits at most IOSMUX_WAIT_MS. Returns
 * the ACTION_RESPONSE payload (+1 retained) or NULL: the caller then passes
 * the message through. */
xpc_object_t iosmux_request(xpc_object_t request);
bool iosmux_allowed(const char *action_id);

/* iosmux_device.m: devices iosmux attached. */
bool iosmux_device_known(const uint8_t uuid[16]);
void iosmux_device_attach(xpc_object_t payload, bool update);
void iosmux_device_detach(const uint8_t uuid[16]);
void iosmux_devices_set_ids(xpc_object_t ids); /* HELLO_ACK deviceIds */
void iosmux_devices_socket_down(void);
/* A copy (+1) of the pushed properties / name for md_proxy, or NULL. */
xpc_object_t iosmux_device_properties(const uint8_t uuid[16]);
xpc_object_t iosmux_device_name(const uint8_t uuid[16]);
int iosmux_parse_uuid(const char *s, uint8_t out[16]);

/* iosmux_gambit.m, iosmux_md_proxy.m: hook installation. */
bool iosmux_gambit_install(void);
bool iosmux_md_proxy_install(void);
void iosmux_run_followups(xpc_object_t followups);

#endif
