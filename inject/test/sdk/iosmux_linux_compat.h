/*
 * Test-only: what the macOS SDK declares in system headers and glibc does
 * not, so inject/ can be syntax-checked on Linux against glibc's POSIX
 * headers plus the stand-ins in this folder. Force-included (-include).
 */
#ifndef IOSMUX_LINUX_COMPAT_H
#define IOSMUX_LINUX_COMPAT_H
/* macOS exposes RTLD_DEFAULT, MAP_ANON and the like by default. */
#define _GNU_SOURCE 1
#include <sys/types.h>
int getpeereid(int socket, uid_t *euid, gid_t *egid);
#endif
