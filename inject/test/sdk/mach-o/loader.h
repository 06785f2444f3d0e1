/* Test-only stand-in for <mach-o/loader.h>: the layouts the dylib reads to
 * find an image's LC_UUID (the public Mach-O format). */
#ifndef IOSMUX_TEST_LOADER_H
#define IOSMUX_TEST_LOADER_H
#include <stdint.h>
struct mach_header {
	uint32_t magic;
	int32_t cputype;
	int32_t cpusubtype;
	uint32_t filetype;
	uint32_t ncmds;
	uint32_t sizeofcmds;
	uint32_t flags;
};
struct mach_header_64 {
	uint32_t magic;
	int32_t cputype;
	int32_t cpusubtype;
	uint32_t filetype;
	uint32_t ncmds;
	uint32_t sizeofcmds;
	uint32_t flags;
	uint32_t reserved;
};
struct load_command {
	uint32_t cmd;
	uint32_t cmdsize;
};
struct uuid_command {
	uint32_t cmd;
	uint32_t cmdsize;
	uint8_t uuid[16];
};
#define MH_MAGIC_64 0xfeedfacf
#define LC_UUID 0x1b
#endif
