package utun

import "golang.org/x/sys/unix"

// CanCreateKernel reports whether this process may create kernel TUN
// interfaces. On Linux that is CAP_NET_ADMIN in the effective set, not
// uid 0: root has it, and so does an unprivileged service given it
// (systemd's AmbientCapabilities=CAP_NET_ADMIN), while a root process
// whose bounding set dropped it has not.
func CanCreateKernel() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	const bit = unix.CAP_NET_ADMIN
	return data[bit/32].Effective&(1<<(bit%32)) != 0
}
