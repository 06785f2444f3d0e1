// Package pairing_test runs third-party RemotePairing clients against the
// device role of github.com/iosmux/iosmux/pairing: appium-ios-remotexpc's
// network (PIN) pairing over RPPairing/TCP, and go-ios's RemotePairing client
// over RSD and RemoteXPC.
package pairing_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/pairing"
)

const simUDID = "00008110-001A2B3C4D5E6F70"

// simIdentity is the simulated device of the shared vectors.
func simIdentity() pairing.DeviceIdentity {
	return pairing.DeviceIdentity{
		Identifier:   "D3A1F5C2-7B8E-4F60-9A1B-2C3D4E5F6071",
		Seed:         bytes.Repeat([]byte{0x21}, ed25519.SeedSize),
		AltIRK:       bytes.Repeat([]byte{0xd0}, 16),
		BTAddr:       "AA:BB:CC:DD:EE:FF",
		MAC:          []byte{0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		Model:        "iPhone14,2",
		Name:         "Test iPhone",
		SerialNumber: "F2LXXXXXXXXX",
		UDID:         simUDID,
	}
}

func simHandshake() pairing.HandshakeInfo {
	return pairing.HandshakeInfo{
		WireProtocolVersion: 26, MinimumSupportedWireProtocolVersion: 8,
		Options: pairing.DeviceOptions{AllowsPairSetup: true, AllowsIncomingTunnelConnections: true, AllowsSharingSensitiveInfo: true},
		Device:  pairing.PeerDeviceInfo{Identifier: simUDID, UDID: simUDID, Name: "Test iPhone", Model: "iPhone14,2"},
	}
}

// events records what the device role saw.
type events struct {
	mu        sync.Mutex
	paired    []pairing.PairedHost
	verified  []string
	listeners []pairing.ListenerRequest
	consents  int
}

func (e *events) hook(cfg *pairing.ServerConfig) {
	cfg.OnPaired = func(h pairing.PairedHost) { e.mu.Lock(); e.paired = append(e.paired, h); e.mu.Unlock() }
	cfg.OnVerified = func(h string) { e.mu.Lock(); e.verified = append(e.verified, h); e.mu.Unlock() }
}

func (e *events) snapshot() (paired []pairing.PairedHost, verified []string, listeners []pairing.ListenerRequest, consents int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]pairing.PairedHost(nil), e.paired...), append([]string(nil), e.verified...),
		append([]pairing.ListenerRequest(nil), e.listeners...), e.consents
}

// server accepts connections on ln and hands each to serve on its own
// goroutine until the test ends; Cleanup closes ln and waits for them all.
func server(t *testing.T, ln net.Listener, serve func(ctx context.Context, nc net.Conn)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				serve(ctx, nc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); cancel(); wg.Wait() })
}
