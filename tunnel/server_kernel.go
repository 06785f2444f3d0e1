package tunnel

import "errors"

// ErrKernelNeedsRoot is returned by NewServer with ServerConfig.Kernel
// when this process may not create a network namespace or TUN devices.
var ErrKernelNeedsRoot = errors.New("tunnel: the kernel device end needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN, for a network namespace and TUN devices)")
