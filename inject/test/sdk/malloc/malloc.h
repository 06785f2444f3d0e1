/* Test-only stand-in for <malloc/malloc.h>. */
#ifndef IOSMUX_TEST_MALLOC_H
#define IOSMUX_TEST_MALLOC_H
typedef struct _malloc_zone_t malloc_zone_t;
malloc_zone_t *malloc_zone_from_ptr(const void *ptr);
#endif
