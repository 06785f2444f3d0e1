/*
 * Per-build knowledge the dylib must not guess (docs/xcode.md §5).
 * Everything here is checked against the running process before use; a
 * mismatch disables the feature, never CDS.
 */
#ifndef IOSMUX_OFFSETS_H
#define IOSMUX_OFFSETS_H

#include <stdint.h>

/* CoreDeviceUtilities.invoke(anyOf:usingContentsOf:) -> Bool, resolved with
 * dlsym (the Mach-O symbol has one more leading underscore). Swift calls it
 * directly, so only an inline patch of its prologue catches it. */
#define IOSMUX_INVOKE_SYMBOL \
	"$s19CoreDeviceUtilities6invoke5anyOf013usingContentsF0SbSayAA20ActionImplementation_pXpG_7Mercury13XPCDictionaryVtF"

/* x86_64 prologue the 13-byte patch replaces: push rbp; mov rbp,rsp;
 * push r15; push r14; push r13; push r12; push rbx. No instruction is
 * pc-relative, so the copied bytes run unchanged in the trampoline. */
static const uint8_t iosmux_invoke_prologue_x86_64[13] = {0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0x41,
							  0x56, 0x41, 0x55, 0x41, 0x54, 0x53};

/* OS_remote_device ivars (RemoteServiceDiscovery.framework) the device
 * registration writes, looked up by name at run time; the offsets seen on
 * macOS 26 are only cross-checked (a difference is logged). */
struct iosmux_ivar {
	const char *name;
	long macos26_offset;
};
static const struct iosmux_ivar iosmux_remote_device_ivars[] = {
	{"_state", 28}, {"_type", 32}, {"_dq", 40}, {"_properties", 48}, {"_uuid", 56}, {"_connection", 80},
};

/* remote_device_type_t network-peer and remote_device_state_t values. */
#define IOSMUX_REMOTE_DEVICE_TYPE_NETWORK_PEER 14
#define IOSMUX_REMOTE_DEVICE_STATE_CONNECTED 2
#define IOSMUX_REMOTE_DEVICE_STATE_DISCONNECTED 3

#endif
