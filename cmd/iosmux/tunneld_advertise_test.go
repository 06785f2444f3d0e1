package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/xpc"
)

// TestTunneldAdvertiseBackend runs `iosmux tunneld --simulate 1
// --advertise backend` against an iOS 27.2 profile (one RSD peer per
// tunnel; a peer presenting another UUID makes it close every service
// port). The listing points at the backend, not the device; the
// backend's RSD answers with the simulated device's own properties (as
// the device's control endpoint reports them) and the services it lists
// work through its forwarders; clients presenting their own identities,
// a refresh-services and several sessions at once leave the device's
// ports where they were (no re-attach) and an open forwarded connection
// working.
func TestTunneldAdvertiseBackend(t *testing.T) {
	out := &lockedBuffer{ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	state := t.TempDir()
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, io.Discard, nil, "tunneld", "--simulate", "1", "--simulate-profile", "27.2", "--userspace",
			"--advertise", "backend", "--port", "0", "--api", "pmd3,appium", "--appium-port", "0",
			"--simulate-control", "127.0.0.1:0", "--simulate-state", state+"/sim", "--state-dir", state)
	}()
	text := func() string {
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.buf.String()
	}
	for start := time.Now(); !strings.Contains(text(), "tunnel up"); time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("tunneld exited early: %v\n%s", err, text())
		default:
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("no tunnel in:\n%s", text())
		}
	}
	find := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(text())
		if m == nil {
			t.Fatalf("no %s in:\n%s", re, text())
		}
		return m[1]
	}
	pmd3 := find(`pymobiledevice3 tunneld API: (http://\S+/)`)
	appium := find(`appium tunnel registry:\s+(http://\S+/)`)
	control := strings.TrimSuffix(find(`simulated devices' control: (http://\S+)`), "/")

	// The device as it describes itself.
	device := func() sim.DeviceStatus {
		t.Helper()
		var ds []sim.DeviceStatus
		getJSON(t, control+"/devices", &ds)
		if len(ds) != 1 {
			t.Fatalf("control lists %d devices", len(ds))
		}
		return ds[0]
	}
	dev := device()

	var listing map[string][]struct {
		Address string `json:"tunnel-address"`
		Port    int    `json:"tunnel-port"`
	}
	getJSON(t, pmd3, &listing)
	es := listing[dev.UDID]
	if len(es) != 1 {
		t.Fatalf("listing %+v has no entry for %s", listing, dev.UDID)
	}
	if es[0].Address != "::1" || es[0].Address == dev.TunnelAddress || es[0].Port == int(dev.TrustedRSDPort) {
		t.Fatalf("listed [%s]:%d; want the backend on ::1, not the device's [%s]:%d",
			es[0].Address, es[0].Port, dev.TunnelAddress, dev.TrustedRSDPort)
	}
	backendRSD := net.JoinHostPort(es[0].Address, strconv.Itoa(es[0].Port))

	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	var clientUUIDs []xpc.UUID
	for range 4 {
		u, err := xpc.NewRandomUUID(nil)
		if err != nil {
			t.Fatal(err)
		}
		clientUUIDs = append(clientUUIDs, u)
	}
	hello := func(u xpc.UUID) *rsd.Client {
		t.Helper()
		nc, err := net.Dial("tcp", backendRSD)
		if err != nil {
			t.Fatal(err)
		}
		c, err := rsd.NewClient(rctx, nc, &rsd.ClientConfig{HostUUID: u})
		if err != nil {
			t.Fatalf("RSD at the listed address: %v", err)
		}
		return c
	}
	c := hello(clientUUIDs[0])
	defer c.Close()
	h := c.Handshake.Device()
	if h.UDID != dev.UDID || h.ProductType != dev.ProductType || h.OSVersion != dev.OSVersion ||
		h.BuildVersion != dev.BuildVersion || !strings.EqualFold(h.BootSessionUUID, dev.BootSessionUUID) {
		t.Errorf("backend's Properties %+v, device says %+v", h, dev.Endpoints)
	}
	if c.Handshake.UUID.IsZero() || strings.EqualFold(c.Handshake.UUID.String(), dev.RSDUUID) {
		t.Errorf("backend's Handshake UUID %v (the device's is %s): want one of its own", c.Handshake.UUID, dev.RSDUUID)
	}

	// The appium listing has the backend's catalog: its forwarder ports.
	var appiumList struct {
		Tunnels map[string]struct {
			Address  string `json:"address"`
			Services map[string]struct {
				Port string `json:"port"`
			} `json:"services"`
		} `json:"tunnels"`
	}
	getJSON(t, appium+"remotexpc/tunnels", &appiumList)
	entry, ok := appiumList.Tunnels[dev.UDID]
	if !ok {
		t.Fatalf("appium listing %+v has no %s", appiumList, dev.UDID)
	}
	lock, ok := c.Handshake.Service(sim.LockdownTrusted)
	if !ok {
		t.Fatalf("the backend lists no %s", sim.LockdownTrusted)
	}
	if got := entry.Services[sim.LockdownTrusted].Port; got != strconv.Itoa(int(lock.Port)) || entry.Address != "::1" {
		t.Errorf("appium lists %s at [%s]:%s, the backend serves it at port %d", sim.LockdownTrusted, entry.Address, got, lock.Port)
	}

	// A service through its forwarder, kept open through what follows.
	getUDID := func(sc *lockdown.PlistConn) string {
		t.Helper()
		if err := sc.Send(rctx, map[string]any{"Label": "iosmux-test", "Request": "GetValue", "Key": "UniqueDeviceID"}); err != nil {
			t.Fatal(err)
		}
		var reply struct{ Value string }
		if err := sc.Receive(rctx, &reply); err != nil {
			t.Fatalf("lockdown through the forwarder: %v", err)
		}
		return reply.Value
	}
	shim := func() *lockdown.PlistConn {
		t.Helper()
		nc, err := net.Dial("tcp", net.JoinHostPort("::1", strconv.Itoa(int(lock.Port))))
		if err != nil {
			t.Fatal(err)
		}
		sc, err := lockdown.ShimClient(rctx, nc, sim.LockdownTrusted, "iosmux-test", nil)
		if err != nil {
			t.Fatalf("RSDCheckin through the forwarder: %v", err)
		}
		return sc
	}
	held := shim()
	defer held.Close()
	if got := getUDID(held); got != dev.UDID {
		t.Errorf("lockdown says %q, want %q", got, dev.UDID)
	}

	// Several clients at once, each with its own identity, and appium's
	// refresh-services: none of it reaches the device as a new peer.
	var more []*rsd.Client
	for _, u := range clientUUIDs[1:] {
		more = append(more, hello(u))
	}
	resp, err := http.Post(appium+"remotexpc/tunnels/"+dev.UDID+"/refresh-services", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("refresh-services: %s", resp.Status)
	}
	fresh := shim()
	if got := getUDID(fresh); got != dev.UDID {
		t.Errorf("a new forwarded connection: lockdown says %q", got)
	}
	fresh.Close()
	for _, m := range more {
		m.Close()
	}
	if got := getUDID(held); got != dev.UDID {
		t.Errorf("the held forwarded connection: lockdown says %q", got)
	}
	if after := device(); after.Stats.Reattaches != 0 || after.TrustedRSDPort != dev.TrustedRSDPort {
		t.Errorf("the device re-attached %d times (RSD port %d → %d)", after.Stats.Reattaches, dev.TrustedRSDPort, after.TrustedRSDPort)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("tunneld: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("tunneld did not stop")
	}
	if !strings.Contains(text(), "tunnel down") {
		t.Errorf("teardown not reported:\n%s", text())
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
