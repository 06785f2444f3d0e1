/*
 * MDRemoteServiceSupport answers from the data iosmux pushed: the
 * Properties and the name CDS asks for by device UUID. For any other UUID,
 * before the first push, or once pushed data is older than
 * IOSMUX_STALE_SECONDS with iosmux away, the original runs.
 *
 * The methods' exact signatures (class or instance methods, argument and
 * return types) are not confirmed; the dylib installs these replacements
 * only where the class has both selectors as class methods, and assumes an
 * NSUUID argument and an xpc dictionary / string result, as the original
 * served them from its handshake cache. docs/xcode.md §5 lists this among the
 * things only a Mac can verify.
 */
#include <objc/message.h>
#include <objc/runtime.h>
#include <string.h>

#include "iosmux.h"

typedef id (*lookup_imp)(id self, SEL cmd, id uuid);

static lookup_imp orig_props, orig_name;

/* uuid_bytes reads an NSUUID's 16 bytes (-getUUIDBytes:). */
static bool uuid_bytes(id uuid, uint8_t out[16])
{
	static SEL sel;
	if (sel == NULL)
		sel = sel_registerName("getUUIDBytes:");
	if (uuid == nil)
		return false;
	Class c = object_getClass(uuid);
	if (c == NULL || class_getInstanceMethod(c, sel) == NULL)
		return false;
	((void (*)(id, SEL, uint8_t *))(void *)objc_msgSend)(uuid, sel, out);
	return true;
}

/* The device table keeps what it returns alive while the device is
 * attached, so the +0 result of a "retrieve" method stays valid. */
static id props_for_uuid(id self, SEL cmd, id uuid)
{
	uint8_t u[16];
	if (uuid_bytes(uuid, u)) {
		xpc_object_t p = iosmux_device_properties(u);
		if (p != NULL) {
			xpc_release(p);
			return (id)p;
		}
	}
	return orig_props(self, cmd, uuid);
}

static id name_for_uuid(id self, SEL cmd, id uuid)
{
	uint8_t u[16];
	if (uuid_bytes(uuid, u)) {
		xpc_object_t n = iosmux_device_name(u);
		if (n != NULL) {
			xpc_release(n);
			return (id)n;
		}
	}
	return orig_name(self, cmd, uuid);
}

bool iosmux_md_proxy_install(void)
{
	Class cls = objc_getClass("MDRemoteServiceSupport");
	if (cls == NULL)
		return false;
	Method mp = class_getClassMethod(cls, sel_registerName("retrievePropertiesForUUID:"));
	Method mn = class_getClassMethod(cls, sel_registerName("retrieveNameForUUID:"));
	if (mp == NULL || mn == NULL) {
		iosmux_log("warn", "MDRemoteServiceSupport lookups not found as class methods: md_proxy off");
		return false;
	}
	orig_props = (lookup_imp)(void *)method_setImplementation(mp, (IMP)(void *)props_for_uuid);
	orig_name = (lookup_imp)(void *)method_setImplementation(mn, (IMP)(void *)name_for_uuid);
	return true;
}
