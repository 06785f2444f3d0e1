/* Test-only stand-in for <mach-o/dyld.h>. */
#ifndef IOSMUX_TEST_DYLD_H
#define IOSMUX_TEST_DYLD_H
#include <stdint.h>
#include <mach-o/loader.h>
uint32_t _dyld_image_count(void);
const struct mach_header *_dyld_get_image_header(uint32_t image_index);
const char *_dyld_get_image_name(uint32_t image_index);
intptr_t _dyld_get_image_vmaddr_slide(uint32_t image_index);
#endif
