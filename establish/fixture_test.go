package establish

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
	"golang.zx2c4.com/wireguard/tun"
)

// A simulated iPhone composed from the L1 device roles, one per path of
// tunnel.md §1, all feeding one tunnel.Server through one establish.Server:
//
//	P1  usbmux.Server on a UNIX socket → lockdown.Server → CoreDeviceProxy
//	P2  untrusted rsd.Server on [::1] → tunnel service (pairing.Server over
//	    RemoteXPC) → createListener on [::1]
//	P3  pairing.Server over RPPairing on 127.0.0.1 → createListener there
//
// The host is paired on both layers: usbmuxd holds its lockdown record, and
// the record store holds its RemotePairing record.

const (
	fixtureUDID     = "00008110-001A2B3C0E01401E"
	fixtureHostName = "iosmux-test-host"
)

type fixture struct {
	dev *tunnel.Server
	ep  *Server

	mux    *usbmux.Client
	muxDev usbmux.DeviceEntry
	lock   *lockdown.Server
	// usbmuxd is the usbmuxd of P1; lockdownConns counts connections to
	// its lockdownd.
	usbmuxd       *usbmux.Server
	lockdownConns atomic.Int32

	rsdAddr string // P2: untrusted RSD
	rpAddr  string // P3: RPPairing

	records pairing.RecordStore

	// tunnelConns are the device's ends of TLS-PSK tunnel connections, for
	// killing the device mid-transfer.
	mu          sync.Mutex
	tunnelConns []*testkit.FreezeConn
	sessions    map[netip.Addr]*tunnel.Session // by the host's tunnel address
}

type fixtureConfig struct {
	faults tunnel.Faults
	// noQUIC refuses createListener quic (iOS 18.2+).
	noQUIC bool
	// noCoreDeviceProxy: lockdown lacks the service (iOS < 17.4).
	noCoreDeviceProxy bool
	// unpaired: the host has no RemotePairing record.
	unpaired bool
	suites   []uint16
}

func newFixture(t testing.TB, fc fixtureConfig) *fixture {
	t.Helper()
	f := &fixture{sessions: map[netip.Addr]*tunnel.Session{}}
	var err error
	f.dev, err = tunnel.NewServer(tunnel.ServerConfig{RSDPort: testRSDPort, Rand: testkit.Rand(5), Faults: fc.faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.dev.Close() })
	ln, err := f.dev.ListenTCP(testRSDPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testkit.ServeBulkListener(ln, nil))
	suites := fc.suites
	if suites == nil {
		// The suite idevice reports devices choosing is CBC-SHA384; the
		// fixture prefers AES-256-GCM (the one go-ios offers) for speed
		// under -race, and keeps CBC for a dedicated test.
		suites = []uint16{tlspsk.TLS_PSK_WITH_AES_256_GCM_SHA384, tlspsk.TLS_PSK_WITH_AES_256_CBC_SHA384, tlspsk.TLS_PSK_WITH_AES_128_CBC_SHA}
	}
	f.ep, err = NewServer(ServerConfig{
		Tunnels:      f.dev,
		QUIC:         !fc.noQUIC,
		CipherSuites: suites,
		Wrap: func(nc net.Conn) (net.Conn, bool) {
			tc, ok := nc.(*net.TCPConn)
			if !ok {
				return nc, true
			}
			fz := testkit.NewFreezeConn(tc, tc)
			f.mu.Lock()
			f.tunnelConns = append(f.tunnelConns, fz)
			f.mu.Unlock()
			return fz, true
		},
		Watch: func(s *tunnel.Session) func() {
			f.mu.Lock()
			f.sessions[s.Params().ClientAddress] = s
			f.mu.Unlock()
			return func() {}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ep.Close() })

	f.startP1(t, fc)
	f.startPairing(t, fc)
	return f
}

// startP1 runs usbmuxd and lockdown with the host paired.
func (f *fixture) startP1(t testing.TB, fc fixtureConfig) {
	ports := usbmux.NewPortMux(0)
	t.Cleanup(func() { ports.Close() })
	services := map[string]lockdown.ServiceHandler{}
	version := "17.4"
	if !fc.noCoreDeviceProxy {
		services[lockdown.CoreDeviceProxy] = f.ep.CoreDeviceProxyService()
	} else {
		version = "17.3.1"
	}
	var err error
	f.lock, err = lockdown.NewServer(lockdown.ServerConfig{
		Values:   map[string]any{"UniqueDeviceID": fixtureUDID, "ProductVersion": version, "DeviceName": "Test iPhone"},
		Services: services,
		Ports:    ports,
		Key:      testDeviceKey(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.lock.Close() })
	ports.Handle(lockdown.Port, func(c net.Conn) {
		f.lockdownConns.Add(1)
		f.lock.ServeConn(c)
	})
	srv := usbmux.NewServer(usbmux.ServerConfig{})
	f.usbmuxd = srv
	t.Cleanup(func() { srv.Close() })
	serial := "00008110001A2B3C0E01401E"
	srv.AddDevice(usbmux.DeviceEntry{SerialNumber: serial, ConnectionType: usbmux.ConnectionUSB}, ports)
	rec, err := lockdown.NewPairRecord(testkit.Rand(7), f.lock.PublicKeyPEM(), "5A2B6F1E-0000-4000-8000-000000000001", srv.BUID(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.lock.AddPairing(rec); err != nil {
		t.Fatal(err)
	}
	b, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetPairRecord(fixtureUDID, b)
	sock := filepath.Join(t.TempDir(), "usbmuxd")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l) // ends when srv.Close closes l
	f.mux = usbmux.NewClient(usbmux.ClientConfig{Addr: usbmux.Addr{Net: "unix", Path: sock}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	devs, err := f.mux.ListDevices(ctx)
	if err != nil || len(devs) != 1 {
		t.Fatalf("usbmuxd lists %v, %v", devs, err)
	}
	f.muxDev = devs[0]
}

// startPairing runs the RemotePairing device role on P2 and P3 and saves
// the host's record.
func (f *fixture) startPairing(t testing.TB, fc fixtureConfig) {
	seed := make([]byte, ed25519.SeedSize)
	seed[31] = 9
	hostKey := ed25519.NewKeyFromSeed(seed)
	hostID := pairing.HostIdentifier(fixtureHostName)
	hosts := &pairing.MemoryHosts{}
	if err := hosts.AddHost(pairing.PairedHost{Identifier: hostID, PublicKey: hostKey.Public().(ed25519.PublicKey)}); err != nil {
		t.Fatal(err)
	}
	f.records = pairing.RecordStore{Dir: t.TempDir()}
	if !fc.unpaired {
		rec := pairing.NewRecord(&pairing.SetupResult{Identity: pairing.Identity{Identifier: hostID, PrivateKey: hostKey}}, "")
		if _, err := f.records.Save(fixtureUDID, rec); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	mkDevice := func(host string) *pairing.Server {
		seed := make([]byte, 32)
		seed[0] = 1
		d, err := pairing.NewServer(&pairing.ServerConfig{
			Rand:     testkit.Rand(11),
			Identity: pairing.DeviceIdentity{Identifier: fixtureUDID, Seed: seed, UDID: fixtureUDID, Name: "Test iPhone", Model: "iPhone14,2"},
			Handshake: pairing.HandshakeInfo{WireProtocolVersion: 19,
				Options: pairing.DeviceOptions{AllowsIncomingTunnelConnections: true},
				Device:  pairing.PeerDeviceInfo{Identifier: fixtureUDID, UDID: fixtureUDID, Model: "iPhone14,2", Name: "Test iPhone"}},
			Hosts: hosts,
			CreateListener: f.ep.CreateListener(Listen{
				TCP: func() (net.Listener, error) { return net.Listen("tcp", net.JoinHostPort(host, "0")) },
				UDP: func() (net.PacketConn, error) { return net.ListenPacket("udp", net.JoinHostPort(host, "0")) },
			}),
		})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// accept serves every connection of ln with serve, all owned by wg.
	accept := func(ln net.Listener, serve func(net.Conn)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stop := context.AfterFunc(ctx, func() { ln.Close() })
			defer stop()
			var cw sync.WaitGroup
			defer cw.Wait()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				cw.Add(1)
				go func() {
					defer cw.Done()
					done := context.AfterFunc(ctx, func() { c.Close() })
					defer done()
					serve(c)
				}()
			}
		}()
	}

	// P2: the tunnel service and the untrusted RSD listing it.
	p2 := mkDevice("::1")
	svcLn, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	accept(svcLn, func(c net.Conn) { p2.ServeXPC(ctx, c, nil) })
	srv, err := rsd.NewServer(rsd.ServerConfig{
		Properties: xpc.NewDict("UniqueDeviceID", xpc.String(fixtureUDID), "ProductVersion", xpc.String("17.4")),
		Services: []rsd.Service{{Name: pairing.TunnelServiceName, Port: uint16(portOf(svcLn.Addr())),
			Entitlement: "com.apple.dt.coredevice.tunnelservice.client",
			Properties:  xpc.NewDict("UsesRemoteXPC", xpc.Bool(true), "ServiceVersion", xpc.Int64(2))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rsdLn, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	accept(rsdLn, func(c net.Conn) {
		if _, err := srv.ServeConn(ctx, c); err == nil {
			// The device keeps the RSD connection until the host leaves.
			c.Read(make([]byte, 1))
		}
		c.Close()
	})
	f.rsdAddr = rsdLn.Addr().String()

	// P3: RPPairing on plain TCP.
	p3 := mkDevice("127.0.0.1")
	rpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accept(rpLn, func(c net.Conn) {
		t := pairing.NewRPPairing(c)
		p3.Serve(ctx, t)
		t.Close()
	})
	f.rpAddr = rpLn.Addr().String()
}

// testDeviceKey is one lockdown device key for every fixture (generating
// RSA-2048 per test costs time under -race).
var testDeviceKey = func() func(testing.TB) *rsa.PrivateKey {
	var once sync.Once
	var key *rsa.PrivateKey
	var kerr error
	return func(t testing.TB) *rsa.PrivateKey {
		once.Do(func() { key, kerr = rsa.GenerateKey(rand.Reader, 2048) })
		if kerr != nil {
			t.Fatal(kerr)
		}
		return key
	}
}()

// options returns host options for the fixture with hostTUN as the TUN.
func (f *fixture) options(hostTUN func(tunnel.Params) tun.Device, proto Protocol) Options {
	return Options{
		NewTUN:   func(p tunnel.Params) (tun.Device, error) { return hostTUN(p), nil },
		Protocol: proto,
		Records:  f.records,
		HostName: fixtureHostName,
	}
}

// start establishes a tunnel over path.
func (f *fixture) start(t testing.TB, path Method, opt Options) (*Tunnel, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch path {
	case MethodCoreDeviceProxy:
		return coreDeviceProxy(ctx, f.mux, f.muxDev, opt)
	case MethodRSD:
		return overRSD(ctx, f.rsdAddr, opt)
	case MethodRemotePairing:
		return remotePairing(ctx, f.rpAddr, opt)
	}
	t.Fatalf("unknown path %v", path)
	return nil, nil
}

func init() {
	// quic-go warns on stderr when it cannot grow the UDP buffers (not
	// root, or a small rmem_max); the tests do not care.
	os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
}

// usbmuxEvent is the fixture's usbmuxd sighting (P1).
func (f *fixture) usbmuxEvent() discovery.Event {
	return discovery.Event{Kind: discovery.Attached, Source: discovery.SourceUsbmux, UDID: f.muxDev.SerialNumber, DeviceID: f.muxDev.DeviceID, ConnectionType: "USB"}
}

// rpEvent is the fixture's network pairing sighting (P3).
func (f *fixture) rpEvent() discovery.Event {
	return discovery.Event{Kind: discovery.Attached, Source: discovery.SourceRemotePairing, Addr: netip.MustParseAddrPort(f.rpAddr)}
}
