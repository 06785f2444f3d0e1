/* Test-only stand-in for <objc/message.h>. */
#ifndef IOSMUX_TEST_OBJC_MESSAGE_H
#define IOSMUX_TEST_OBJC_MESSAGE_H
#include <objc/runtime.h>
/* As with OBJC_OLD_DISPATCH_PROTOTYPES=0: cast to the method's type. */
void objc_msgSend(void);
#endif
