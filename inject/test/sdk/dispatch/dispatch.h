/* Test-only stand-in for <dispatch/dispatch.h>: the queue the dylib makes. */
#ifndef IOSMUX_TEST_DISPATCH_H
#define IOSMUX_TEST_DISPATCH_H
#include <xpc/xpc.h>
typedef struct dispatch_queue_attr_s *dispatch_queue_attr_t;
extern struct dispatch_queue_attr_s _dispatch_queue_attr_concurrent;
#define DISPATCH_QUEUE_CONCURRENT (&_dispatch_queue_attr_concurrent)
dispatch_queue_t dispatch_queue_create(const char *label, dispatch_queue_attr_t attr);
#endif
