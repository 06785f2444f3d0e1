/* Test-only stand-in for <libkern/OSCacheControl.h>. */
#ifndef IOSMUX_TEST_OSCACHECONTROL_H
#define IOSMUX_TEST_OSCACHECONTROL_H
#include <stddef.h>
void sys_icache_invalidate(void *start, size_t len);
#endif
