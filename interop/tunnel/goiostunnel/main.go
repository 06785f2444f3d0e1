// Command goiostunnel runs go-ios v1.3.2's CoreDeviceProxy tunnel client
// (ios/tunnel.ConnectTunnelLockdown: usbmuxd, lockdown, the service TLS,
// CDTunnel, a kernel TUN through water) against the device with the given
// UDID on the usbmuxd of USBMUXD_SOCKET_ADDRESS, then runs the application
// APP (the interop test binary) twice as a child process, which moves MIB
// MiB to the device's sink port and then MIB MiB from its source port
// through the tunnel, so that its socket calls are not this process's CPU.
// It prints {"up_mbps","down_mbps","address","setup_ms","up","down",
// "self_cpu_ns","app_cpus"} as JSON (setup_ms: ConnectTunnelLockdown's
// time; up and down: this process's and the application's CPU over each
// transfer), or fails. Run it in a network namespace of its own: it
// creates a TUN interface.
//
// Usage: goiostunnel UDID MIB SINKPORT SOURCEPORT APP
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: goiostunnel UDID MIB SINKPORT SOURCEPORT APP")
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
	// address first, without IFA_F_NODAD), so the application's dial
	// retries that one error.
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
	res := map[string]any{"address": t.Address, "setup_ms": float64(setUp.Microseconds()) / 1000}
	if size > 0 {
		up, upX, cpus, err := runApp(os.Args[5], "up", net.JoinHostPort(t.Address, os.Args[3]), size)
		if err != nil {
			fail("upload", err)
		}
		down, downX, _, err := runApp(os.Args[5], "down", net.JoinHostPort(t.Address, os.Args[4]), size)
		if err != nil {
			fail("download", err)
		}
		res["up_mbps"], res["down_mbps"], res["up"], res["down"], res["app_cpus"] = up, down, upX, downX, cpus
		res["self_cpu_ns"] = selfCPU()
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func fail(step string, err error) {
	fmt.Fprintf(os.Stderr, "goiostunnel: %s: %v\n", step, err)
	os.Exit(1)
}

// xfer is one transfer's account, as the interop test reads it: this
// process's own CPU over the transfer (RUSAGE_SELF, without the
// application's), the application's (its wait4 rusage), the wall time.
type xfer struct {
	Client time.Duration `json:"client_cpu_ns"`
	App    time.Duration `json:"app_cpu_ns"`
	Wall   time.Duration `json:"wall_ns"`
}

// runApp runs the application for one transfer, as the interop test's
// runApp does for iosmux's client: app with
// IOSMUX_INTEROP_TUNNEL_APP="up|down ADDR:PORT BYTES", which prints
// {"mbps","cpus"}.
func runApp(app, dir, addr string, size int64) (float64, xfer, string, error) {
	cmd := exec.Command(app)
	cmd.Env = append(os.Environ(), fmt.Sprintf("IOSMUX_INTEROP_TUNNEL_APP=%s %s %d", dir, addr, size))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cpu0, t0 := selfCPU(), time.Now()
	out, err := cmd.Output()
	x := xfer{Client: selfCPU() - cpu0, Wall: time.Since(t0)}
	if err != nil {
		return 0, x, "", fmt.Errorf("%v: %s", err, stderr.Bytes())
	}
	x.App = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var r struct {
		MBps float64 `json:"mbps"`
		CPUs string  `json:"cpus"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, x, "", fmt.Errorf("the application printed %q: %v", out, err)
	}
	return r.MBps, x, r.CPUs, nil
}

// selfCPU is this process's user+system time, without its children's.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
