/*
 * Test-only stand-in for <xpc/xpc.h>: the part of libxpc's public API the
 * dylib uses, declared as the macOS SDK declares it with
 * OS_OBJECT_USE_OBJC=0 (objects are plain pointers, xpc_retain/xpc_release
 * manage them). Used to syntax-check inject/ on Linux and, with
 * xpcstub.c, to run the converter. Not Apple's header.
 */
#ifndef IOSMUX_TEST_XPC_H
#define IOSMUX_TEST_XPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void *xpc_object_t;
typedef const struct _xpc_type_s *xpc_type_t;
typedef xpc_object_t xpc_connection_t;
typedef xpc_object_t xpc_endpoint_t;
typedef void (^xpc_handler_t)(xpc_object_t object);
typedef bool (^xpc_dictionary_applier_t)(const char *key, xpc_object_t value);
typedef bool (^xpc_array_applier_t)(size_t index, xpc_object_t value);
typedef struct dispatch_queue_s *dispatch_queue_t;

struct _xpc_type_s;
extern const struct _xpc_type_s _xpc_type_null, _xpc_type_bool, _xpc_type_int64, _xpc_type_uint64,
	_xpc_type_double, _xpc_type_date, _xpc_type_data, _xpc_type_string, _xpc_type_uuid, _xpc_type_array,
	_xpc_type_dictionary, _xpc_type_fd, _xpc_type_shmem, _xpc_type_error, _xpc_type_connection,
	_xpc_type_endpoint, _xpc_type_activity;

#define XPC_TYPE_NULL (&_xpc_type_null)
#define XPC_TYPE_BOOL (&_xpc_type_bool)
#define XPC_TYPE_INT64 (&_xpc_type_int64)
#define XPC_TYPE_UINT64 (&_xpc_type_uint64)
#define XPC_TYPE_DOUBLE (&_xpc_type_double)
#define XPC_TYPE_DATE (&_xpc_type_date)
#define XPC_TYPE_DATA (&_xpc_type_data)
#define XPC_TYPE_STRING (&_xpc_type_string)
#define XPC_TYPE_UUID (&_xpc_type_uuid)
#define XPC_TYPE_ARRAY (&_xpc_type_array)
#define XPC_TYPE_DICTIONARY (&_xpc_type_dictionary)
#define XPC_TYPE_FD (&_xpc_type_fd)
#define XPC_TYPE_SHMEM (&_xpc_type_shmem)
#define XPC_TYPE_ERROR (&_xpc_type_error)
#define XPC_TYPE_CONNECTION (&_xpc_type_connection)
#define XPC_TYPE_ENDPOINT (&_xpc_type_endpoint)
#define XPC_TYPE_ACTIVITY (&_xpc_type_activity)

xpc_type_t xpc_get_type(xpc_object_t object);
xpc_object_t xpc_retain(xpc_object_t object);
void xpc_release(xpc_object_t object);
char *xpc_copy_description(xpc_object_t object);

xpc_object_t xpc_null_create(void);
xpc_object_t xpc_bool_create(bool value);
bool xpc_bool_get_value(xpc_object_t xbool);
xpc_object_t xpc_int64_create(int64_t value);
int64_t xpc_int64_get_value(xpc_object_t xint);
xpc_object_t xpc_uint64_create(uint64_t value);
uint64_t xpc_uint64_get_value(xpc_object_t xuint);
xpc_object_t xpc_double_create(double value);
double xpc_double_get_value(xpc_object_t xdouble);
xpc_object_t xpc_date_create(int64_t interval);
int64_t xpc_date_get_value(xpc_object_t xdate);
xpc_object_t xpc_data_create(const void *bytes, size_t length);
const void *xpc_data_get_bytes_ptr(xpc_object_t xdata);
size_t xpc_data_get_length(xpc_object_t xdata);
xpc_object_t xpc_string_create(const char *string);
size_t xpc_string_get_length(xpc_object_t xstring);
const char *xpc_string_get_string_ptr(xpc_object_t xstring);
xpc_object_t xpc_uuid_create(const unsigned char *uuid);
const uint8_t *xpc_uuid_get_bytes(xpc_object_t xuuid);

xpc_object_t xpc_array_create(xpc_object_t *objects, size_t count);
void xpc_array_append_value(xpc_object_t xarray, xpc_object_t value);
size_t xpc_array_get_count(xpc_object_t xarray);
xpc_object_t xpc_array_get_value(xpc_object_t xarray, size_t index);
bool xpc_array_apply(xpc_object_t xarray, xpc_array_applier_t applier);

xpc_object_t xpc_dictionary_create(const char *const *keys, const xpc_object_t *values, size_t count);
xpc_object_t xpc_dictionary_create_reply(xpc_object_t original);
void xpc_dictionary_set_value(xpc_object_t xdict, const char *key, xpc_object_t value);
xpc_object_t xpc_dictionary_get_value(xpc_object_t xdict, const char *key);
size_t xpc_dictionary_get_count(xpc_object_t xdict);
bool xpc_dictionary_apply(xpc_object_t xdict, xpc_dictionary_applier_t applier);
const char *xpc_dictionary_get_string(xpc_object_t xdict, const char *key);
int64_t xpc_dictionary_get_int64(xpc_object_t xdict, const char *key);
bool xpc_dictionary_get_bool(xpc_object_t xdict, const char *key);
const uint8_t *xpc_dictionary_get_uuid(xpc_object_t xdict, const char *key);
xpc_connection_t xpc_dictionary_get_remote_connection(xpc_object_t xdict);

xpc_connection_t xpc_connection_create_from_endpoint(xpc_endpoint_t endpoint);
xpc_connection_t xpc_connection_create(const char *name, dispatch_queue_t targetq);
void xpc_connection_set_event_handler(xpc_connection_t connection, xpc_handler_t handler);
void xpc_connection_resume(xpc_connection_t connection);
void xpc_connection_cancel(xpc_connection_t connection);
void xpc_connection_send_message(xpc_connection_t connection, xpc_object_t message);

#endif
