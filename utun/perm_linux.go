package utun

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tunDevice is the clone device every Linux TUN is created through.
const tunDevice = "/dev/net/tun"

// CheckKernel says whether this process may create kernel TUN interfaces,
// and if not, why. On Linux that takes CAP_NET_ADMIN in the effective set,
// not uid 0 (root has it; so does an unprivileged service given it as an
// ambient capability, while a root process whose bounding set dropped it
// has not), and a /dev/net/tun this user may open (mode 0666 on most
// distributions).
func CheckKernel() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("utun: reading this process's capabilities: %w", err)
	}
	const bit = unix.CAP_NET_ADMIN
	if data[bit/32].Effective&(1<<(bit%32)) == 0 {
		return errors.New("utun: kernel TUN interfaces need CAP_NET_ADMIN (root, or a service given the capability)")
	}
	f, err := os.OpenFile(tunDevice, os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("utun: %w: this user may not open it (make it mode 0666, as most distributions do, or run as root)", err)
		}
		return fmt.Errorf("utun: %w", err)
	}
	f.Close()
	return nil
}
