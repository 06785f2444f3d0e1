// Command goiosbackend runs go-ios v1.3.2's RemotePairing client
// (ios/tunnel.ManualPairAndConnectToTunnelTCP: mDNS discovery of
// _remoted._tcp, the untrusted RSD on port 58783, pair-verify or pair-setup
// over the RemoteXPC tunnel service, createListener, TLS-PSK and CDTunnel on
// a kernel TUN) against the device with the given UDID — served by the
// iosmux backend — keeping its pair records in DIR. Through the tunnel it
// then reads the trusted RSD with go-ios's RSD client and moves bytes
// through the echo and source services, and prints what it got as JSON.
//
// Usage: goiosbackend UDID DIR
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"time"

	"github.com/danielpaulus/go-ios/ios"
	"github.com/danielpaulus/go-ios/ios/tunnel"
)

// Services of the simulated iPhone (sim.EchoService, sim.SourceService).
const (
	echoService   = "com.iosmux.sim.echo"
	sourceService = "com.iosmux.sim.bytesource"
)

type result struct {
	Address  string   `json:"address"`
	RsdPort  int      `json:"rsdPort"`
	UDID     string   `json:"udid"`     // from the tunnel
	RsdUDID  string   `json:"rsdUdid"`  // from the trusted RSD Handshake
	Services []string `json:"services"` // trusted RSD service names
	Echo     bool     `json:"echo"`     // bytes came back through the tunnel
	Source   int      `json:"source"`   // bytes of the source stream received
	// SourceSHA256 is the digest of those bytes (the test compares it with
	// the simulator's stream).
	SourceSHA256 string `json:"sourceSHA256"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goiosbackend UDID DIR")
		os.Exit(2)
	}
	r, err := run(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "goiosbackend:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
}

func run(udid, dir string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pm, err := tunnel.NewPairRecordManager(dir)
	if err != nil {
		return result{}, err
	}
	dev := ios.DeviceEntry{Properties: ios.DeviceProperties{SerialNumber: udid}}
	t, err := tunnel.ManualPairAndConnectToTunnelTCP(ctx, dev, pm)
	if err != nil {
		return result{}, fmt.Errorf("RemotePairing tunnel: %w", err)
	}
	defer t.Close()
	r := result{Address: t.Address, RsdPort: t.RsdPort, UDID: t.Udid}
	if err := waitSourceAddress(ctx, t.Address); err != nil {
		return r, err
	}
	rsd, err := ios.NewWithAddrPortDevice(t.Address, t.RsdPort, dev)
	if err != nil {
		return r, fmt.Errorf("trusted RSD: %w", err)
	}
	defer rsd.Close()
	h, err := rsd.Handshake()
	if err != nil {
		return r, fmt.Errorf("trusted RSD handshake: %w", err)
	}
	r.RsdUDID = h.Udid
	for name := range h.Services {
		r.Services = append(r.Services, name)
	}
	sort.Strings(r.Services)
	if err := echo(t.Address, h.GetPort(echoService), dev); err != nil {
		return r, err
	}
	r.Echo = true
	r.Source, r.SourceSHA256, err = source(t.Address, h.GetPort(sourceService), dev, 4<<20)
	return r, err
}

// waitSourceAddress waits until the kernel routes to the device from an
// address of the tunnel's /64 (go-ios returns as soon as it has added the
// address; until the kernel has it ready a connection would leave with
// another source address).
func waitSourceAddress(ctx context.Context, device string) error {
	dst, err := netip.ParseAddr(device)
	if err != nil {
		return err
	}
	prefix, _ := dst.Prefix(64)
	for {
		c, err := net.Dial("udp", netip.AddrPortFrom(dst, 9).String())
		if err == nil {
			src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
			c.Close()
			if prefix.Contains(src) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the tunnel address never became usable: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func echo(addr string, port int, dev ios.DeviceEntry) error {
	conn, err := ios.ConnectTUNDevice(addr, port, dev)
	if err != nil {
		return fmt.Errorf("echo service: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	msg := bytes.Repeat([]byte("go-ios through the iosmux backend\n"), 4096)
	errc := make(chan error, 1)
	go func() { _, err := conn.Write(msg); errc <- err }()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("echo write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo: bytes differ")
	}
	return nil
}

// source asks the byte source for n bytes and returns how many arrived
// and their SHA-256.
func source(addr string, port int, dev ios.DeviceEntry, n int) (int, string, error) {
	conn, err := ios.ConnectTUNDevice(addr, port, dev)
	if err != nil {
		return 0, "", fmt.Errorf("source service: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(n))
	if _, err := conn.Write(req[:]); err != nil {
		return 0, "", err
	}
	h := sha256.New()
	got, err := io.Copy(h, conn)
	return int(got), hex.EncodeToString(h.Sum(nil)), err
}
