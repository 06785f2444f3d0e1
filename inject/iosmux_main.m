/*
 * iosmux dylib: constructor, the socket iosmux connects to, frames, and the
 * request/response rendezvous used by the invoke hook.
 * docs/protocols/coredevice-bridge.md; the fail-safe rules are its §6.
 */
#include <errno.h>
#include <mach-o/dyld.h>
#include <mach-o/loader.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "iosmux.h"
#include "iosmux_xpcconv.h"

#ifdef MSG_NOSIGNAL
#define IOSMUX_SEND_FLAGS MSG_NOSIGNAL
#else
#define IOSMUX_SEND_FLAGS 0
#endif

struct pending {
	uint64_t corr;
	xpc_object_t response;
	bool done;
	struct pending *next;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* state below */
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER; /* one frame at a time */
static int conn_fd = -1;
static char **allow;
static size_t nallow;
static uint64_t next_corr = 1;
static struct pending *pending;
static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static bool hook_gambit, hook_md_proxy;

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, IOSMUX_SEND_FLAGS);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_all(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* send_frame writes one frame on fd; payload may be NULL. */
static int send_frame(int fd, uint8_t kind, uint16_t flags, uint64_t corr, xpc_object_t payload)
{
	iosmux_buf b = {0};
	uint8_t h[IOSMUX_FRAME_HEADER] = {0};
	iosmux_buf_put(&b, h, sizeof h);
	if (payload != NULL && iosmux_xpc_encode(&b, payload) != 0) {
		iosmux_buf_free(&b);
		return -1;
	}
	if (b.err || b.len - 4 > IOSMUX_MAX_FRAME) {
		iosmux_buf_free(&b);
		return -1;
	}
	uint32_t n = (uint32_t)(b.len - 4);
	b.p[0] = (uint8_t)(n >> 24);
	b.p[1] = (uint8_t)(n >> 16);
	b.p[2] = (uint8_t)(n >> 8);
	b.p[3] = (uint8_t)n;
	b.p[4] = IOSMUX_FRAME_VERSION;
	b.p[5] = kind;
	b.p[6] = (uint8_t)(flags >> 8);
	b.p[7] = (uint8_t)flags;
	for (int i = 0; i < 8; i++)
		b.p[8 + i] = (uint8_t)(corr >> (56 - 8 * i));
	pthread_mutex_lock(&wmu);
	int rc = write_all(fd, b.p, b.len);
	pthread_mutex_unlock(&wmu);
	iosmux_buf_free(&b);
	return rc;
}

/* read_frame reads one frame; *payload is NULL for an empty one. Returns
 * 0, -1 for a closed or broken socket, -2 for a protocol error. */
static int read_frame(int fd, uint8_t *kind, uint16_t *flags, uint64_t *corr, xpc_object_t *payload)
{
	uint8_t h[IOSMUX_FRAME_HEADER];
	*payload = NULL;
	if (read_all(fd, h, 4) != 0)
		return -1;
	uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
	if (n > IOSMUX_MAX_FRAME || n < IOSMUX_FRAME_HEADER - 4)
		return -2;
	if (read_all(fd, h + 4, IOSMUX_FRAME_HEADER - 4) != 0)
		return -1;
	size_t plen = n - (IOSMUX_FRAME_HEADER - 4);
	uint8_t *p = NULL;
	if (plen > 0) {
		p = malloc(plen);
		if (p == NULL || read_all(fd, p, plen) != 0) {
			free(p);
			return -1;
		}
	}
	*kind = h[5];
	*flags = (uint16_t)(h[6] << 8 | h[7]);
	*corr = 0;
	for (int i = 0; i < 8; i++)
		*corr = *corr << 8 | h[8 + i];
	if (h[4] != IOSMUX_FRAME_VERSION) {
		free(p);
		return -2;
	}
	if (plen > 0) {
		*payload = iosmux_xpc_decode(p, plen);
		free(p);
		if (*payload == NULL)
			return -2;
	}
	return 0;
}

static void send_error(int fd, const char *code, const char *msg)
{
	xpc_object_t e = xpc_dictionary_create(NULL, NULL, 0);
	xpc_object_t c = xpc_string_create(code), m = xpc_string_create(msg);
	xpc_dictionary_set_value(e, "code", c);
	xpc_dictionary_set_value(e, "msg", m);
	send_frame(fd, IOSMUX_ERROR, 0, 0, e);
	xpc_release(c);
	xpc_release(m);
	xpc_release(e);
}

void iosmux_log(const char *level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "iosmux[%d] %s: %s\n", (int)getpid(), level, msg);
	pthread_mutex_lock(&mu);
	int fd = conn_fd;
	pthread_mutex_unlock(&mu);
	if (fd < 0)
		return;
	xpc_object_t d = xpc_dictionary_create(NULL, NULL, 0);
	xpc_object_t l = xpc_string_create(level), m = xpc_string_create(msg);
	xpc_dictionary_set_value(d, "level", l);
	xpc_dictionary_set_value(d, "msg", m);
	send_frame(fd, IOSMUX_LOG, 0, 0, d);
	xpc_release(l);
	xpc_release(m);
	xpc_release(d);
}

bool iosmux_connected(void)
{
	pthread_mutex_lock(&mu);
	bool c = conn_fd >= 0;
	pthread_mutex_unlock(&mu);
	return c;
}

bool iosmux_allowed(const char *id)
{
	bool ok = false;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < nallow && !ok; i++)
		ok = strcmp(allow[i], id) == 0;
	pthread_mutex_unlock(&mu);
	return ok;
}

xpc_object_t iosmux_request(xpc_object_t request)
{
	struct pending p = {0};
	pthread_mutex_lock(&mu);
	int fd = conn_fd;
	if (fd < 0) {
		pthread_mutex_unlock(&mu);
		return NULL;
	}
	p.corr = next_corr++;
	p.next = pending;
	pending = &p;
	pthread_mutex_unlock(&mu);

	xpc_object_t payload = xpc_dictionary_create(NULL, NULL, 0);
	xpc_dictionary_set_value(payload, "request", request);
	int rc = send_frame(fd, IOSMUX_ACTION_REQUEST, 0, p.corr, payload);
	xpc_release(payload);

	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += IOSMUX_WAIT_MS / 1000;
	until.tv_nsec += (long)(IOSMUX_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&mu);
	while (rc == 0 && !p.done) {
		if (pthread_cond_timedwait(&cond, &mu, &until) == ETIMEDOUT)
			break;
	}
	for (struct pending **pp = &pending; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == &p) {
			*pp = p.next;
			break;
		}
	}
	pthread_mutex_unlock(&mu);
	return p.response; /* NULL on timeout, error or a closed socket */
}

/* image_uuid renders the LC_UUID of the loaded image whose path ends in
 * suffix, or "" when it is not loaded. */
static void image_uuid(const char *suffix, char out[37])
{
	out[0] = 0;
	size_t sl = strlen(suffix);
	for (uint32_t i = 0; i < _dyld_image_count(); i++) {
		const char *name = _dyld_get_image_name(i);
		size_t nl = name ? strlen(name) : 0;
		if (nl < sl || strcmp(name + nl - sl, suffix) != 0)
			continue;
		const struct mach_header_64 *h = (const struct mach_header_64 *)_dyld_get_image_header(i);
		if (h == NULL || h->magic != MH_MAGIC_64)
			return;
		const uint8_t *lc = (const uint8_t *)(h + 1);
		for (uint32_t c = 0; c < h->ncmds; c++) {
			const struct load_command *l = (const struct load_command *)lc;
			if (l->cmd == LC_UUID) {
				const uint8_t *u = ((const struct uuid_command *)l)->uuid;
				snprintf(out, 37, "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%02X%02X%02X%02X%02X%02X", u[0], u[1],
					 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
				return;
			}
			lc += l->cmdsize;
		}
		return;
	}
}

static void set_str(xpc_object_t d, const char *k, const char *v)
{
	xpc_object_t s = xpc_string_create(v);
	xpc_dictionary_set_value(d, k, s);
	xpc_release(s);
}

static void set_i64(xpc_object_t d, const char *k, int64_t v)
{
	xpc_object_t s = xpc_int64_create(v);
	xpc_dictionary_set_value(d, k, s);
	xpc_release(s);
}

static void set_bool(xpc_object_t d, const char *k, bool v)
{
	xpc_object_t s = xpc_bool_create(v);
	xpc_dictionary_set_value(d, k, s);
	xpc_release(s);
}

static xpc_object_t hello_payload(void)
{
	char cd[37], cdu[37], m[37];
	image_uuid("/CoreDevice", cd);
	image_uuid("/CoreDeviceUtilities", cdu);
	image_uuid("/Mercury", m);
	xpc_object_t d = xpc_dictionary_create(NULL, NULL, 0);
	set_i64(d, "pid", getpid());
	set_i64(d, "uid", getuid());
#if defined(__x86_64__)
	set_str(d, "arch", "x86_64");
#elif defined(__arm64e__)
	set_str(d, "arch", "arm64e");
#else
	set_str(d, "arch", "arm64");
#endif
	set_str(d, "dylibVersion", IOSMUX_DYLIB_VERSION);
	set_i64(d, "protocol", IOSMUX_PROTOCOL);
	xpc_object_t b = xpc_dictionary_create(NULL, NULL, 0);
	set_str(b, "coreDevice", cd);
	set_str(b, "coreDeviceUtilities", cdu);
	set_str(b, "mercury", m);
	xpc_dictionary_set_value(d, "build", b);
	xpc_release(b);
	xpc_object_t h = xpc_dictionary_create(NULL, NULL, 0);
	set_bool(h, "gambit", hook_gambit);
	set_bool(h, "mdProxy", hook_md_proxy);
	xpc_dictionary_set_value(d, "hooks", h);
	xpc_release(h);
	return d;
}

/* handshake sends HELLO and reads HELLO_ACK; on success the allow-list
 * and the known devices are installed. */
static int handshake(int fd)
{
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
#ifdef SO_NOSIGPIPE
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
	xpc_object_t hello = hello_payload();
	int rc = send_frame(fd, IOSMUX_HELLO, 0, 0, hello);
	xpc_release(hello);
	if (rc != 0)
		return -1;
	uint8_t kind;
	uint16_t flags;
	uint64_t corr;
	xpc_object_t ack;
	if (read_frame(fd, &kind, &flags, &corr, &ack) != 0)
		return -1;
	if (kind != IOSMUX_HELLO_ACK || ack == NULL || xpc_get_type(ack) != XPC_TYPE_DICTIONARY) {
		if (ack != NULL)
			xpc_release(ack);
		return -1;
	}
	xpc_object_t proto = xpc_dictionary_get_value(ack, "protocol");
	xpc_object_t list = xpc_dictionary_get_value(ack, "allow");
	if (proto == NULL || xpc_get_type(proto) != XPC_TYPE_INT64 || xpc_int64_get_value(proto) != IOSMUX_PROTOCOL ||
	    list == NULL || xpc_get_type(list) != XPC_TYPE_ARRAY) {
		xpc_release(ack);
		return -1;
	}
	size_t n = xpc_array_get_count(list);
	char **a = calloc(n ? n : 1, sizeof *a);
	size_t k = 0;
	for (size_t i = 0; a != NULL && i < n; i++) {
		xpc_object_t s = xpc_array_get_value(list, i);
		if (xpc_get_type(s) == XPC_TYPE_STRING) {
			size_t l = xpc_string_get_length(s) + 1;
			a[k] = malloc(l);
			if (a[k] != NULL)
				memcpy(a[k++], xpc_string_get_string_ptr(s), l);
		}
	}
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < nallow; i++)
		free(allow[i]);
	free(allow);
	allow = a;
	nallow = a != NULL ? k : 0;
	pthread_mutex_unlock(&mu);
	iosmux_devices_set_ids(xpc_dictionary_get_value(ack, "deviceIds"));
	xpc_release(ack);
	tv.tv_sec = 0; /* from now on reads wait for iosmux as long as it likes */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return 0;
}

static void release_handles(xpc_object_t payload)
{
	xpc_object_t list = payload ? xpc_dictionary_get_value(payload, "handles") : NULL;
	if (list == NULL || xpc_get_type(list) != XPC_TYPE_ARRAY)
		return;
	for (size_t i = 0; i < xpc_array_get_count(list); i++) {
		xpc_object_t v = xpc_array_get_value(list, i);
		if (xpc_get_type(v) == XPC_TYPE_UINT64)
			iosmux_handle_release(xpc_uint64_get_value(v));
	}
}

/* serve handles iosmux's frames until the connection ends. */
static void serve(int fd)
{
	for (;;) {
		uint8_t kind;
		uint16_t flags;
		uint64_t corr;
		xpc_object_t payload;
		int rc = read_frame(fd, &kind, &flags, &corr, &payload);
		if (rc == -2) {
			send_error(fd, "payload", "malformed frame");
			return;
		}
		if (rc != 0)
			return;
		bool dict = payload != NULL && xpc_get_type(payload) == XPC_TYPE_DICTIONARY;
		switch (kind) {
		case IOSMUX_DEVICE_ATTACH:
		case IOSMUX_DEVICE_UPDATE:
			if (dict)
				iosmux_device_attach(payload, kind == IOSMUX_DEVICE_UPDATE);
			break;
		case IOSMUX_DEVICE_DETACH: {
			const uint8_t *u = dict ? xpc_dictionary_get_uuid(payload, "uuid") : NULL;
			if (u != NULL)
				iosmux_device_detach(u);
			break;
		}
		case IOSMUX_ACTION_RESPONSE:
			pthread_mutex_lock(&mu);
			for (struct pending *p = pending; p != NULL; p = p->next) {
				if (p->corr == corr && !p->done && dict) {
					p->response = xpc_retain(payload);
					p->done = true;
				}
			}
			pthread_cond_broadcast(&cond);
			pthread_mutex_unlock(&mu);
			break;
		case IOSMUX_SIDECHANNEL_SEND:
		case IOSMUX_BROADCAST_EVENT:
			if (dict) {
				xpc_object_t f = xpc_dictionary_create(NULL, NULL, 0);
				xpc_object_t k = xpc_int64_create(kind);
				xpc_dictionary_set_value(f, "kind", k);
				xpc_dictionary_set_value(f, "payload", payload);
				xpc_object_t list = xpc_array_create(&f, 1);
				iosmux_run_followups(list);
				xpc_release(list);
				xpc_release(k);
				xpc_release(f);
			}
			break;
		case IOSMUX_RELEASE_HANDLE:
			release_handles(payload);
			break;
		case IOSMUX_ERROR:
			if (payload != NULL)
				xpc_release(payload);
			iosmux_log("warn", "iosmux reported a protocol error; disconnecting");
			return;
		default:
			if (payload != NULL)
				xpc_release(payload);
			send_error(fd, "kind", "unknown kind");
			return;
		}
		if (payload != NULL)
			xpc_release(payload);
	}
}

/* listener accepts iosmux, one connection at a time, from this uid or
 * root only. */
static void *listener(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			iosmux_log("error", "accept: %s; the dylib stays passive", strerror(errno));
			return NULL;
		}
		uid_t euid;
		gid_t egid;
		if (getpeereid(fd, &euid, &egid) != 0 || (euid != 0 && euid != getuid())) {
			iosmux_log("warn", "refused a connection from uid %d", (int)euid);
			close(fd);
			continue;
		}
		if (handshake(fd) != 0) {
			iosmux_log("warn", "handshake with iosmux failed");
			close(fd);
			continue;
		}
		pthread_mutex_lock(&mu);
		conn_fd = fd;
		pthread_mutex_unlock(&mu);
		iosmux_log("info", "iosmux connected");
		serve(fd);
		pthread_mutex_lock(&mu);
		conn_fd = -1;
		for (struct pending *p = pending; p != NULL; p = p->next)
			p->done = true; /* waiting hooks pass through now */
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&mu);
		iosmux_devices_socket_down();
		close(fd);
		fprintf(stderr, "iosmux[%d] info: iosmux disconnected; every message passes through\n", (int)getpid());
	}
}

__attribute__((constructor)) static void iosmux_init(void)
{
	snprintf(sock_path, sizeof sock_path, "/tmp/iosmux-cds.%d.sock", (int)getpid());
	hook_gambit = iosmux_gambit_install();
	hook_md_proxy = iosmux_md_proxy_install();
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (lfd < 0) {
		iosmux_log("error", "socket: %s; the dylib stays passive", strerror(errno));
		return;
	}
	struct sockaddr_un sa;
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	unlink(sock_path);
	mode_t old = umask(077);
	int rc = bind(lfd, (struct sockaddr *)&sa, sizeof sa);
	umask(old);
	if (rc != 0 || chmod(sock_path, 0600) != 0 || listen(lfd, 4) != 0) {
		iosmux_log("error", "listening on %s: %s; the dylib stays passive", sock_path, strerror(errno));
		close(lfd);
		return;
	}
	pthread_t t;
	if (pthread_create(&t, NULL, listener, (void *)(intptr_t)lfd) != 0) {
		close(lfd);
		unlink(sock_path);
		return;
	}
	pthread_detach(t);
	iosmux_log("info", "listening on %s (invoke hook %s, md_proxy %s)", sock_path, hook_gambit ? "on" : "off",
		   hook_md_proxy ? "on" : "off");
}

__attribute__((destructor)) static void iosmux_fini(void)
{
	if (sock_path[0] != 0)
		unlink(sock_path);
}
