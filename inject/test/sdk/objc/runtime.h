/* Test-only stand-in for <objc/runtime.h>: the functions the dylib calls. */
#ifndef IOSMUX_TEST_OBJC_RUNTIME_H
#define IOSMUX_TEST_OBJC_RUNTIME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#ifndef __OBJC__
typedef struct objc_object *id;
typedef struct objc_class *Class;
typedef struct objc_selector *SEL;
#endif
/* As with OBJC_OLD_DISPATCH_PROTOTYPES=0: cast before calling. */
typedef void (*IMP)(void);
typedef signed char BOOL;
#ifndef nil
#define nil ((id)0)
#endif
typedef struct objc_method *Method;
typedef struct objc_ivar *Ivar;
Class objc_getClass(const char *name);
Class objc_getMetaClass(const char *name);
Class object_getClass(id obj);
SEL sel_registerName(const char *str);
Method class_getInstanceMethod(Class cls, SEL name);
Method class_getClassMethod(Class cls, SEL name);
IMP method_getImplementation(Method m);
IMP method_setImplementation(Method m, IMP imp);
id class_createInstance(Class cls, size_t extraBytes);
size_t class_getInstanceSize(Class cls);
Ivar class_getInstanceVariable(Class cls, const char *name);
ptrdiff_t ivar_getOffset(Ivar v);
#endif
