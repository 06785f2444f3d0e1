/*
 * Devices iosmux attached: the fast-path list the invoke hook checks, the
 * data md_proxy answers from, and the device object CDS is given.
 *
 * Registration follows docs/xcode.md §5: an
 * OS_remote_device built from the pushed Properties (RemoteServiceDiscovery
 * ivars, looked up by name and cross-checked). Wrapping it in an
 * RSDDeviceWrapper and a ServiceDeviceRepresentation for CDS's
 * ServiceDeviceManager needs per-build Swift entry points and the SDR's
 * layout, which are not known for any build yet: that step is refused and
 * logged, never guessed. No device is ever synthesised from defaults.
 */
#include <dispatch/dispatch.h>
#include <objc/runtime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "iosmux.h"
#include "iosmux_offsets.h"

struct device {
	uint8_t uuid[16];
	xpc_object_t props; /* dictionary, or NULL */
	xpc_object_t name;  /* string, or NULL */
	id remote;          /* our OS_remote_device, or nil */
	struct device *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct device *devices;
static uint8_t (*hello_ids)[16];
static size_t nhello_ids;
static time_t down_since; /* 0 while iosmux is connected */

int iosmux_parse_uuid(const char *s, uint8_t out[16])
{
	int n = 0;
	for (const char *p = s; *p != 0; p++) {
		if (*p == '-' && (p - s == 8 || p - s == 13 || p - s == 18 || p - s == 23))
			continue;
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return -1;
		if (n >= 32)
			return -1;
		if (n % 2 == 0)
			out[n / 2] = (uint8_t)(v << 4);
		else
			out[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 32 ? 0 : -1;
}

static struct device *find(const uint8_t uuid[16])
{
	for (struct device *d = devices; d != NULL; d = d->next)
		if (memcmp(d->uuid, uuid, 16) == 0)
			return d;
	return NULL;
}

bool iosmux_device_known(const uint8_t uuid[16])
{
	pthread_mutex_lock(&mu);
	bool ok = find(uuid) != NULL;
	for (size_t i = 0; !ok && i < nhello_ids; i++)
		ok = memcmp(hello_ids[i], uuid, 16) == 0;
	pthread_mutex_unlock(&mu);
	return ok;
}

void iosmux_devices_set_ids(xpc_object_t ids)
{
	pthread_mutex_lock(&mu);
	free(hello_ids);
	hello_ids = NULL;
	nhello_ids = 0;
	down_since = 0;
	if (ids != NULL && xpc_get_type(ids) == XPC_TYPE_ARRAY && xpc_array_get_count(ids) > 0) {
		size_t n = xpc_array_get_count(ids);
		hello_ids = calloc(n, 16);
		for (size_t i = 0; hello_ids != NULL && i < n; i++) {
			xpc_object_t s = xpc_array_get_value(ids, i);
			if (xpc_get_type(s) == XPC_TYPE_STRING && iosmux_parse_uuid(xpc_string_get_string_ptr(s), hello_ids[nhello_ids]) == 0)
				nhello_ids++;
		}
	}
	pthread_mutex_unlock(&mu);
}

void iosmux_devices_socket_down(void)
{
	pthread_mutex_lock(&mu);
	down_since = time(NULL);
	nhello_ids = 0;
	pthread_mutex_unlock(&mu);
}

/* fresh reports whether pushed data may still be served (mu held). */
static bool fresh(void) { return down_since == 0 || time(NULL) - down_since < IOSMUX_STALE_SECONDS; }

xpc_object_t iosmux_device_properties(const uint8_t uuid[16])
{
	xpc_object_t p = NULL;
	pthread_mutex_lock(&mu);
	struct device *d = find(uuid);
	if (d != NULL && d->props != NULL && fresh())
		p = xpc_retain(d->props);
	pthread_mutex_unlock(&mu);
	return p;
}

xpc_object_t iosmux_device_name(const uint8_t uuid[16])
{
	xpc_object_t n = NULL;
	pthread_mutex_lock(&mu);
	struct device *d = find(uuid);
	if (d != NULL && d->name != NULL && fresh())
		n = xpc_retain(d->name);
	pthread_mutex_unlock(&mu);
	return n;
}

/* ivar_at returns a pointer to the named ivar of obj, or NULL. */
static void *ivar_at(id obj, Class cls, const char *name, long expect)
{
	Ivar v = class_getInstanceVariable(cls, name);
	if (v == NULL)
		return NULL;
	ptrdiff_t off = ivar_getOffset(v);
	if (off != expect)
		iosmux_log("info", "OS_remote_device %s at offset %ld (macOS 26: %ld)", name, (long)off, expect);
	if (off <= 0 || (size_t)off + sizeof(void *) > class_getInstanceSize(cls))
		return NULL;
	return (uint8_t *)obj + off;
}

/* make_remote_device builds the OS_remote_device CDS would get from
 * RemoteServiceDiscovery for a network peer: type network-peer, state
 * connected, a concurrent queue, the Properties, the UUID as 16 raw bytes
 * and an XPC connection (the object requires one). */
static id make_remote_device(const uint8_t uuid[16], xpc_object_t props)
{
	Class cls = objc_getClass("OS_remote_device");
	if (cls == NULL)
		return nil;
	for (size_t i = 0; i < sizeof iosmux_remote_device_ivars / sizeof iosmux_remote_device_ivars[0]; i++) {
		if (class_getInstanceVariable(cls, iosmux_remote_device_ivars[i].name) == NULL) {
			iosmux_log("warn", "OS_remote_device has no ivar %s: not registering", iosmux_remote_device_ivars[i].name);
			return nil;
		}
	}
	id obj = class_createInstance(cls, 0);
	if (obj == nil)
		return nil;
	uint32_t *state = ivar_at(obj, cls, "_state", 28), *type = ivar_at(obj, cls, "_type", 32);
	dispatch_queue_t *dq = ivar_at(obj, cls, "_dq", 40);
	xpc_object_t *pp = ivar_at(obj, cls, "_properties", 48);
	uint8_t **up = ivar_at(obj, cls, "_uuid", 56);
	xpc_connection_t *cp = ivar_at(obj, cls, "_connection", 80);
	if (state == NULL || type == NULL || dq == NULL || pp == NULL || up == NULL || cp == NULL) {
		iosmux_log("warn", "OS_remote_device layout not as expected: not registering");
		return nil; /* the instance is left unused rather than freed half-built */
	}
	uint8_t *u = malloc(16);
	dispatch_queue_t q = dispatch_queue_create("com.iosmux.remote-device", DISPATCH_QUEUE_CONCURRENT);
	xpc_connection_t conn = q != NULL ? xpc_connection_create(NULL, q) : NULL;
	if (u == NULL || conn == NULL) {
		free(u);
		return nil;
	}
	memcpy(u, uuid, 16);
	*state = IOSMUX_REMOTE_DEVICE_STATE_CONNECTED;
	*type = IOSMUX_REMOTE_DEVICE_TYPE_NETWORK_PEER;
	*dq = q;
	*pp = xpc_retain(props);
	*up = u;
	*cp = conn;
	return obj;
}

static void register_device(struct device *d)
{
	if (d->remote != nil || d->props == NULL)
		return;
	d->remote = make_remote_device(d->uuid, d->props);
	if (d->remote == nil) {
		iosmux_log("warn", "device not registered: OS_remote_device unavailable; CDS keeps its own view");
		return;
	}
	iosmux_log("warn", "device object built, but registering it with ServiceDeviceManager needs this "
			   "CoreDevice build's entry points (docs/xcode.md section 5): not done");
}

void iosmux_device_attach(xpc_object_t payload, bool update)
{
	const uint8_t *u = xpc_dictionary_get_uuid(payload, "uuid");
	xpc_object_t props = xpc_dictionary_get_value(payload, "properties");
	xpc_object_t name = xpc_dictionary_get_value(payload, "name");
	if (u == NULL || props == NULL || xpc_get_type(props) != XPC_TYPE_DICTIONARY)
		return;
	pthread_mutex_lock(&mu);
	struct device *d = find(u);
	if (d == NULL) {
		d = calloc(1, sizeof *d);
		if (d == NULL) {
			pthread_mutex_unlock(&mu);
			return;
		}
		memcpy(d->uuid, u, 16);
		d->next = devices;
		devices = d;
	}
	if (d->props != NULL)
		xpc_release(d->props);
	if (d->name != NULL)
		xpc_release(d->name);
	d->props = xpc_retain(props);
	d->name = name != NULL && xpc_get_type(name) == XPC_TYPE_STRING ? xpc_retain(name) : NULL;
	if (!update)
		register_device(d);
	pthread_mutex_unlock(&mu);
}

void iosmux_device_detach(const uint8_t uuid[16])
{
	pthread_mutex_lock(&mu);
	for (struct device **pp = &devices; *pp != NULL; pp = &(*pp)->next) {
		struct device *d = *pp;
		if (memcmp(d->uuid, uuid, 16) != 0)
			continue;
		*pp = d->next;
		if (d->remote != nil) {
			/* Marked disconnected and kept: CDS may still hold it (the
			 * removal path through ServiceDeviceManager is unknown). */
			Class cls = objc_getClass("OS_remote_device");
			uint32_t *st = ivar_at(d->remote, cls, "_state", 28);
			if (st != NULL)
				*st = IOSMUX_REMOTE_DEVICE_STATE_DISCONNECTED;
		}
		if (d->props != NULL)
			xpc_release(d->props);
		if (d->name != NULL)
			xpc_release(d->name);
		free(d);
		break;
	}
	pthread_mutex_unlock(&mu);
}
