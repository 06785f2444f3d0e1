// Command goiostunnel runs go-ios v1.3.2's CoreDeviceProxy tunnel client
// (ios/tunnel.ConnectTunnelLockdown: usbmuxd, lockdown, the service TLS,
// CDTunnel, a kernel TUN through water) against the device with the given
// UDID on the usbmuxd of USBMUXD_SOCKET_ADDRESS, then moves MIB MiB to the
// device's sink port and MIB MiB from its source port through the tunnel.
// It prints {"up_mbps","down_mbps","address","setup_ms"} as JSON (setup_ms:
// ConnectTunnelLockdown's time), or fails. Run it in a
// network namespace of its own: it creates a TUN interface.
//
// Usage: goiostunnel UDID MIB SINKPORT SOURCEPORT
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: goiostunnel UDID MIB SINKPORT SOURCEPORT")
		os.Exit(2)
	}
	mib, _ := strconv.Atoi(os.Args[2])
	dev, err := ios.GetDevice(os.Args[1])
	if err != nil {
		fail("device", err)
	}
	// go-ios dials through its new TUN at once; in a fresh namespace the
	// kernel keeps the TUN's address tentative (DAD) for about a second and
	// the dial fails with "cannot assign requested address". We run in a
	// namespace of our own (see the package comment), so only it changes.
	// Even without DAD the address leaves the tentative state only when the
	// kernel's address work runs after go-ios sets the link up (it adds the
	// address first, without IFA_F_NODAD), so dial retries that one error.
	for _, p := range []string{"/proc/sys/net/ipv6/conf/all/accept_dad", "/proc/sys/net/ipv6/conf/default/accept_dad"} {
		if err := os.WriteFile(p, []byte("0"), 0); err != nil {
			fail("DAD off", err)
		}
	}
	start := time.Now()
	t, err := tunnel.ConnectTunnelLockdown(dev)
	if err != nil {
		fail("tunnel", err)
	}
	setUp := time.Since(start)
	defer t.Close()
	size := int64(mib) << 20
	up, err := transfer(t.Address, os.Args[3], size, true)
	if err != nil {
		fail("upload", err)
	}
	down, err := transfer(t.Address, os.Args[4], size, false)
	if err != nil {
		fail("download", err)
	}
	out, _ := json.Marshal(map[string]any{"up_mbps": up, "down_mbps": down, "address": t.Address, "setup_ms": float64(setUp.Microseconds()) / 1000})
	fmt.Println(string(out))
}

// dial connects to the device through the TUN, retrying for a few seconds
// while the kernel still holds the TUN's address tentative.
func dial(addr string) (net.Conn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp6", addr, 15*time.Second)
		if err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "goiostunnel: %s: %v\n", step, err)
	os.Exit(1)
}

// transfer uploads size bytes to the sink (which answers the count it
// received) or downloads size bytes from the source (asked with an 8-byte
// length), and returns MB/s.
func transfer(addr, port string, size int64, up bool) (float64, error) {
	c, err := dial(net.JoinHostPort(addr, port))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	buf := make([]byte, 1<<20)
	start := time.Now()
	var hdr [8]byte
	if up {
		for left := size; left > 0; left -= int64(len(buf)) {
			if _, err := c.Write(buf[:min(left, int64(len(buf)))]); err != nil {
				return 0, err
			}
		}
		c.(*net.TCPConn).CloseWrite()
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return 0, err
		}
		if got := int64(binary.BigEndian.Uint64(hdr[:])); got != size {
			return 0, fmt.Errorf("sink received %d bytes, want %d", got, size)
		}
	} else {
		binary.BigEndian.PutUint64(hdr[:], uint64(size))
		if _, err := c.Write(hdr[:]); err != nil {
			return 0, err
		}
		n, err := io.CopyBuffer(io.Discard, c, buf)
		if err != nil {
			return 0, err
		}
		if n != size {
			return 0, fmt.Errorf("source sent %d bytes, want %d", n, size)
		}
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}
