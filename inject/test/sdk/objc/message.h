/* Test-only stand-in for <objc/message.h>. */
#ifndef IOSMUX_TEST_OBJC_MESSAGE_H
#define IOSMUX_TEST_OBJC_MESSAGE_H
#include <objc/runtime.h>
void objc_msgSend(void);
#endif
