/*
 * The Mercury action hook on CoreDeviceUtilities.invoke(anyOf:usingContentsOf:).
 *
 * CDS offers every incoming message to this function first. The hook asks
 * iosmux only about messages that carry CoreDevice.actionIdentifier, whose
 * id is on iosmux's allow-list and whose CoreDevice.deviceIdentifier names
 * a device iosmux attached; for everything else, and whenever iosmux is
 * away, slow, or answers passthrough, it calls the original. It never
 * reports "handled" for a message it did not answer (an over-broad hook
 * once swallowed DeviceManagerCheckInRequest and broke device listing).
 * docs/protocols/coredevice-bridge.md §5–§6.
 */
#include <dlfcn.h>
#include <libkern/OSCacheControl.h>
#include <mach/mach.h>
#include <malloc/malloc.h>
#include <objc/runtime.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "iosmux.h"
#include "iosmux_offsets.h"

typedef __attribute__((swiftcall)) bool (*invoke_fn)(void *impls, void *dict);

static invoke_fn original; /* the trampoline: copied prologue, then jump back */

/* Each action id that passed through for a failure is logged once. */
static pthread_mutex_t logged_mu = PTHREAD_MUTEX_INITIALIZER;
static char *logged[64];

static void log_once(const char *action, const char *why)
{
	pthread_mutex_lock(&logged_mu);
	size_t i = 0;
	for (; i < 64 && logged[i] != NULL; i++) {
		if (strcmp(logged[i], action) == 0) {
			pthread_mutex_unlock(&logged_mu);
			return;
		}
	}
	if (i < 64) {
		size_t n = strlen(action) + 1;
		logged[i] = malloc(n);
		if (logged[i] != NULL)
			memcpy(logged[i], action, n);
	}
	pthread_mutex_unlock(&logged_mu);
	iosmux_log("info", "%s passed through: %s", action, why);
}

/* as_dictionary returns the xpc dictionary behind Mercury.XPCDictionary.
 * Its layout is not documented; the dylib assumes it wraps the object
 * pointer and checks before use: a live heap block whose class is
 * OS_xpc_dictionary, else NULL (passthrough). */
static xpc_object_t as_dictionary(void *dict)
{
	static Class cls;
	if (cls == NULL)
		cls = objc_getClass("OS_xpc_dictionary");
	if (dict == NULL || cls == NULL || malloc_zone_from_ptr(dict) == NULL)
		return NULL;
	if (object_getClass((id)dict) != cls)
		return NULL;
	return (xpc_object_t)dict;
}

/* answer tries iosmux; true means the reply was sent. */
static bool answer(xpc_object_t msg)
{
	const char *action = xpc_dictionary_get_string(msg, IOSMUX_KEY_ACTION);
	if (action == NULL)
		return false; /* not an action: never ours */
	if (!iosmux_allowed(action))
		return false;
	const char *dev = xpc_dictionary_get_string(msg, IOSMUX_KEY_DEVICE);
	uint8_t u[16];
	if (dev == NULL || iosmux_parse_uuid(dev, u) != 0 || !iosmux_device_known(u))
		return false; /* real devices on this Mac are untouched */
	if (!iosmux_connected()) {
		log_once(action, "iosmux not connected");
		return false;
	}
	xpc_object_t resp = iosmux_request(msg);
	if (resp == NULL) {
		log_once(action, "no answer from iosmux in time");
		return false;
	}
	bool sent = false;
	const char *disp = xpc_dictionary_get_string(resp, "disposition");
	xpc_object_t keys = xpc_dictionary_get_value(resp, "reply");
	xpc_connection_t conn = xpc_dictionary_get_remote_connection(msg);
	if (disp != NULL && strcmp(disp, "reply") == 0 && keys != NULL && xpc_get_type(keys) == XPC_TYPE_DICTIONARY &&
	    conn != NULL) {
		xpc_object_t reply = xpc_dictionary_create_reply(msg);
		if (reply != NULL) {
			xpc_dictionary_apply(keys, ^bool(const char *k, xpc_object_t v) {
				xpc_dictionary_set_value(reply, k, v);
				return true;
			});
			xpc_connection_send_message(conn, reply);
			xpc_release(reply);
			sent = true;
			iosmux_run_followups(xpc_dictionary_get_value(resp, "followups"));
		}
	}
	xpc_release(resp);
	return sent;
}

__attribute__((swiftcall)) static bool hook(void *impls, void *dict)
{
	xpc_object_t msg = as_dictionary(dict);
	if (msg != NULL && answer(msg))
		return true;
	return original(impls, dict);
}

void iosmux_run_followups(xpc_object_t followups)
{
	if (followups == NULL || xpc_get_type(followups) != XPC_TYPE_ARRAY)
		return;
	for (size_t i = 0; i < xpc_array_get_count(followups); i++) {
		xpc_object_t f = xpc_array_get_value(followups, i);
		if (xpc_get_type(f) != XPC_TYPE_DICTIONARY)
			continue;
		int64_t kind = xpc_dictionary_get_int64(f, "kind");
		xpc_object_t p = xpc_dictionary_get_value(f, "payload");
		if (p == NULL || xpc_get_type(p) != XPC_TYPE_DICTIONARY)
			continue;
		if (kind == IOSMUX_SIDECHANNEL_SEND) {
			xpc_object_t ep = xpc_dictionary_get_value(p, "endpoint");
			xpc_object_t m = xpc_dictionary_get_value(p, "message");
			if (ep == NULL || xpc_get_type(ep) != XPC_TYPE_ENDPOINT || m == NULL)
				continue;
			xpc_connection_t c = xpc_connection_create_from_endpoint(ep);
			if (c == NULL)
				continue;
			xpc_connection_set_event_handler(c, ^(xpc_object_t e) {
				(void)e;
			});
			xpc_connection_resume(c);
			xpc_connection_send_message(c, m);
			if (!xpc_dictionary_get_bool(p, "keepOpen"))
				xpc_connection_cancel(c);
			xpc_release(c);
		} else if (kind == IOSMUX_BROADCAST_EVENT) {
			/* How CDS broadcasts a device-state event is not known:
			 * nothing is sent on a guess. */
			iosmux_log("info", "BROADCAST_EVENT not implemented; dropped");
		}
	}
}

#if defined(__x86_64__)
/* patch writes "movabs r10, <to>; jmp r10" (13 bytes) over the prologue at
 * at, after a trampoline that runs the copied prologue and jumps back. */
static bool patch(uint8_t *at, void *to)
{
	uint8_t *tramp = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, -1, 0);
	if (tramp == MAP_FAILED)
		return false;
	memcpy(tramp, at, 13);
	uint64_t back = (uint64_t)(uintptr_t)(at + 13);
	static const uint8_t jmp[6] = {0xff, 0x25, 0, 0, 0, 0}; /* jmp [rip+0] */
	memcpy(tramp + 13, jmp, 6);
	memcpy(tramp + 19, &back, 8);
	if (mprotect(tramp, 4096, PROT_READ | PROT_EXEC) != 0) {
		munmap(tramp, 4096);
		return false;
	}
	uint8_t code[13] = {0x49, 0xba, 0, 0, 0, 0, 0, 0, 0, 0, 0x41, 0xff, 0xe2};
	uint64_t dst = (uint64_t)(uintptr_t)to;
	memcpy(code + 2, &dst, 8);
	uintptr_t page = (uintptr_t)at & ~(uintptr_t)(getpagesize() - 1);
	vm_size_t len = (vm_size_t)((uintptr_t)at + 13 - page);
	if (vm_protect(mach_task_self(), page, len, 0, VM_PROT_READ | VM_PROT_WRITE | VM_PROT_COPY) != KERN_SUCCESS) {
		munmap(tramp, 4096);
		return false;
	}
	original = (invoke_fn)(void *)tramp;
	memcpy(at, code, 13);
	vm_protect(mach_task_self(), page, len, 0, VM_PROT_READ | VM_PROT_EXECUTE);
	sys_icache_invalidate(at, 13);
	return true;
}
#endif

bool iosmux_gambit_install(void)
{
	uint8_t *target = dlsym(RTLD_DEFAULT, IOSMUX_INVOKE_SYMBOL);
	if (target == NULL) {
		iosmux_log("warn", "invoke(anyOf:usingContentsOf:) not found: actions run natively");
		return false;
	}
#if defined(__x86_64__)
	if (memcmp(target, iosmux_invoke_prologue_x86_64, sizeof iosmux_invoke_prologue_x86_64) != 0) {
		iosmux_log("warn", "invoke(anyOf:) prologue differs from the expected bytes (new build?): not patched");
		return false;
	}
	if (!patch(target, (void *)hook)) {
		iosmux_log("warn", "patching invoke(anyOf:) failed: actions run natively");
		return false;
	}
	return true;
#else
	/* arm64e: pointer authentication and code-signing rules make inline
	 * patching different; not attempted (docs/xcode.md §5). */
	iosmux_log("warn", "invoke hook not supported on this architecture: actions run natively");
	return false;
#endif
}
