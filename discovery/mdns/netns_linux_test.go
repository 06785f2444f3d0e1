package mdns

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery/internal/vethtest"
	"github.com/iosmux/iosmux/internal/testkit"
)

// link builds two namespaces joined by veth "phone0" (the simulated
// device's side, 10.77.0.1) — "host0" (10.77.0.2).
func link(t *testing.T) (phone, host *testkit.NetNS) {
	t.Helper()
	phone, host = testkit.NewNetNS(t), testkit.NewNetNS(t)
	for _, ns := range []*testkit.NetNS{phone, host} {
		if err := vethtest.Prepare(ns); err != nil {
			t.Fatal(err)
		}
	}
	vethtest.Pair(t, phone, host, "phone0", "host0", "10.77.0.1", "10.77.0.2")
	return phone, host
}

func startResponder(t *testing.T, ns *testkit.NetNS, cfg ResponderConfig) *Responder {
	t.Helper()
	var r *Responder
	if err := ns.Do(func() (err error) {
		r, err = NewResponder(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func browse(t *testing.T, ns *testkit.NetNS, ifname, service string, timeout time.Duration) []Instance {
	t.Helper()
	var got []Instance
	if err := ns.Do(func() (err error) {
		got, err = Browse(context.Background(), BrowseConfig{Interface: ifname, Service: service, Timeout: timeout})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func linkLocal(t *testing.T, ns *testkit.NetNS, ifname string) netip.Addr {
	t.Helper()
	var ll netip.Addr
	ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().IsLinkLocalUnicast() {
				ll = p.Addr()
			}
		}
		return nil
	})
	if !ll.IsValid() {
		t.Fatalf("%s has no link-local address", ifname)
	}
	return ll
}

var phoneServices = []Announcement{
	{Instance: "iPhone", Type: ServiceRemoted, Host: "iPhone-sim.local.", Port: 58783},
	{Instance: "0A1B2C3D", Type: ServiceRemotePairing, Host: "iPhone-sim.local.", Port: 49152,
		Text: []string{"identifier=0A1B2C3D-0000-4000-8000-000000000001", "authTag=AAECAwQF", "model=iPhone17,1", "ver=24"}},
}

func TestBrowseAcrossVeth(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := link(t)
	startResponder(t, phone, ResponderConfig{Interface: "phone0", Services: phoneServices})
	phoneLL := linkLocal(t, phone, "phone0")

	got := browse(t, host, "host0", ServiceRemoted, time.Second)
	want := []Instance{{
		Name: "iPhone", Service: "_remoted._tcp.local.", Host: "iPhone-sim.local", Port: 58783,
		Text: []string{""}, Interface: "host0",
	}}
	if len(got) != 1 {
		t.Fatalf("browse found %d instances, want 1: %+v", len(got), got)
	}
	addrs := got[0].Addrs
	got[0].Addrs = nil
	if !reflectEqual(got, want) {
		t.Errorf("instance = %+v, want %+v", got[0], want[0])
	}
	// The phone's own addresses: its link-local (scoped to our side of the
	// link) and its IPv4.
	for _, a := range []netip.Addr{phoneLL.WithZone("host0"), netip.MustParseAddr("10.77.0.1")} {
		if !slices.Contains(addrs, a) {
			t.Errorf("addresses %v lack %v", addrs, a)
		}
	}

	rp := browse(t, host, "host0", ServiceRemotePairing, time.Second)
	if len(rp) != 1 || rp[0].Name != "0A1B2C3D" || rp[0].Port != 49152 {
		t.Fatalf("remotepairing browse = %+v", rp)
	}
	txt := rp[0].TXT()
	if txt["identifier"] != "0A1B2C3D-0000-4000-8000-000000000001" || txt["authTag"] != "AAECAwQF" {
		t.Errorf("TXT = %v", txt)
	}
	// Nothing answers for a type nobody offers.
	if none := browse(t, host, "host0", ServiceMobdev2, 300*time.Millisecond); len(none) != 0 {
		t.Errorf("mobdev2 browse = %+v, want none", none)
	}
}

func TestBrowseSameNamespace(t *testing.T) {
	// Responder and browser share a namespace (the simulator and the
	// daemon in one process): multicast loopback delivers, and both
	// sockets share port 5353.
	testkit.CheckLeaks(t)
	phone, host := link(t)
	_ = host
	startResponder(t, phone, ResponderConfig{Interface: "phone0", Services: phoneServices[:1]})
	got := browse(t, phone, "phone0", ServiceRemoted, time.Second)
	if len(got) != 1 || got[0].Port != 58783 {
		t.Fatalf("browse = %+v", got)
	}
}

func TestGoodbyeWithdraws(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := link(t)
	r := startResponder(t, phone, ResponderConfig{Interface: "phone0", Services: phoneServices[:1]})
	if got := browse(t, host, "host0", ServiceRemoted, time.Second); len(got) != 1 {
		t.Fatalf("before close: %+v", got)
	}
	r.Close()
	r.Close() // idempotent
	if got := browse(t, host, "host0", ServiceRemoted, 500*time.Millisecond); len(got) != 0 {
		t.Fatalf("after close: %+v", got)
	}
}

// TestLegacyUnicastQuery plays a one-shot querier from an ephemeral port
// (RFC 6762 §6.7): the reply comes back by unicast with the query's ID, the
// question echoed and TTLs of at most 10 s.
func TestLegacyUnicastQuery(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := link(t)
	startResponder(t, phone, ResponderConfig{Interface: "phone0", Services: phoneServices[:1]})
	var c *net.UDPConn
	if err := host.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 77, 0, 2)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q, _ := (&Packet{ID: 0x4242, Questions: []Question{{Name: "_remoted._tcp.local.", Type: TypePTR}}}).Append(nil)
	if _, err := c.WriteToUDP(q, &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: Port}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, MaxPacket)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no unicast reply: %v", err)
	}
	if from.Port != Port {
		t.Errorf("reply from port %d, want %d", from.Port, Port)
	}
	pk, err := ParsePacket(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if pk.ID != 0x4242 || len(pk.Questions) != 1 || len(pk.Answers) != 1 {
		t.Fatalf("reply = %+v", pk)
	}
	for _, r := range append(pk.Answers, pk.Additionals...) {
		if r.TTL > 10 || r.CacheFlush {
			t.Errorf("record %+v: TTL %d cache-flush %v", r.Name, r.TTL, r.CacheFlush)
		}
	}
}

func reflectEqual(a, b []Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Service != y.Service || x.Host != y.Host || x.Port != y.Port ||
			x.Interface != y.Interface || !slices.Equal(x.Text, y.Text) || !slices.Equal(x.Addrs, y.Addrs) {
			return false
		}
	}
	return true
}

// BenchmarkBrowseFirstAnswer measures one browse across the veth link that
// ends at the first complete answer (MaxInstances 1, as the USB-NCM monitor
// browses): query out, responder answer with additionals back, parse.
func BenchmarkBrowseFirstAnswer(b *testing.B) {
	phone, host := testkit.NewNetNS(b), testkit.NewNetNS(b)
	for _, ns := range []*testkit.NetNS{phone, host} {
		if err := vethtest.Prepare(ns); err != nil {
			b.Fatal(err)
		}
	}
	vethtest.Pair(b, phone, host, "phone0", "host0", "10.77.0.1", "10.77.0.2")
	var r *Responder
	if err := phone.Do(func() (err error) {
		r, err = NewResponder(ResponderConfig{Interface: "phone0", Services: phoneServices[:1]})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ResetTimer()
	for b.Loop() {
		var got []Instance
		if err := host.Do(func() (err error) {
			got, err = Browse(context.Background(), BrowseConfig{Interface: "host0", Service: ServiceRemoted, Timeout: 5 * time.Second, MaxInstances: 1})
			return err
		}); err != nil || len(got) != 1 {
			b.Fatalf("browse: %v %v", got, err)
		}
	}
}
