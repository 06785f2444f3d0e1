/* Test-only stand-in for <mach/mach.h>: memory protection for patching. */
#ifndef IOSMUX_TEST_MACH_H
#define IOSMUX_TEST_MACH_H
#include <stdint.h>
typedef int kern_return_t;
typedef unsigned int mach_port_t;
typedef mach_port_t vm_map_t;
typedef uintptr_t vm_address_t;
typedef uintptr_t vm_size_t;
typedef int vm_prot_t;
typedef int boolean_t;
#define KERN_SUCCESS 0
#define VM_PROT_READ 1
#define VM_PROT_WRITE 2
#define VM_PROT_EXECUTE 4
#define VM_PROT_COPY 0x10
extern mach_port_t mach_task_self_;
#define mach_task_self() mach_task_self_
kern_return_t vm_protect(vm_map_t task, vm_address_t address, vm_size_t size, boolean_t set_maximum, vm_prot_t new_protection);
#endif
