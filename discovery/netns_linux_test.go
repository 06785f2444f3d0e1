package discovery

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/discovery/internal/vethtest"
	"github.com/iosmux/iosmux/discovery/mdns"
	"github.com/iosmux/iosmux/internal/retry"
	"github.com/iosmux/iosmux/internal/testkit"
)

func namespaces(t *testing.T) (phone, host *testkit.NetNS) {
	t.Helper()
	phone, host = testkit.NewNetNS(t), testkit.NewNetNS(t)
	for _, ns := range []*testkit.NetNS{phone, host} {
		if err := vethtest.Prepare(ns); err != nil {
			t.Fatal(err)
		}
	}
	return phone, host
}

// waitLinks waits for the next reported list (hang guard only).
func waitLinks(t *testing.T, ch <-chan []Link) []string {
	t.Helper()
	select {
	case l := <-ch:
		var names []string
		for _, x := range l {
			names = append(names, x.Name)
			if !x.Addr.IsLinkLocalUnicast() || x.Addr.Zone() != x.Name || x.Index == 0 {
				t.Errorf("bad link %+v", x)
			}
		}
		return names
	case <-time.After(20 * time.Second):
		t.Fatal("no link change reported")
	}
	return nil
}

func TestNetlinkLinks(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := namespaces(t)
	var nl *NetlinkLinks
	if err := host.Do(func() (err error) { nl, err = NewNetlinkLinks([]string{"skip"}); return err }); err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	ch := make(chan []Link, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- nl.Watch(ctx, func(l []Link) { ch <- l }) }()

	if got := waitLinks(t, ch); len(got) != 0 {
		t.Errorf("initial links = %v, want none (lo is not a candidate)", got)
	}
	vethtest.Pair(t, phone, host, "phone0", "host0", "10.78.0.1", "10.78.0.2")
	for got := waitLinks(t, ch); !equalNames(got, "host0"); got = waitLinks(t, ch) {
		// Intermediate lists (link up, address not yet there) may come first.
	}
	// Tunnels and ignored prefixes never show up.
	vethtest.Pair(t, phone, host, "phone1", "utun9", "10.79.0.1", "10.79.0.2")
	vethtest.Pair(t, phone, host, "phone2", "skip0", "10.80.0.1", "10.80.0.2")
	if err := vethtest.Run(host, "ip", "link", "del", "host0"); err != nil {
		t.Fatal(err)
	}
	for got := waitLinks(t, ch); len(got) != 0; got = waitLinks(t, ch) {
		if !equalNames(got, "host0") {
			t.Fatalf("links = %v", got)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v", err)
	}
}

func equalNames(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

func TestPollLinks(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := namespaces(t)
	ch := make(chan []Link, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	// PollLinks lists interfaces from its own thread: run it inside host.
	go func() {
		done <- host.Do(func() error {
			return (&PollLinks{Interval: 20 * time.Millisecond}).Watch(ctx, func(l []Link) { ch <- l })
		})
	}()
	if got := waitLinks(t, ch); len(got) != 0 {
		t.Errorf("initial links = %v", got)
	}
	vethtest.Pair(t, phone, host, "phone0", "host0", "10.78.0.1", "10.78.0.2")
	for got := waitLinks(t, ch); !equalNames(got, "host0"); got = waitLinks(t, ch) {
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch = %v", err)
	}
}

// TestNCMOverVeth is the USB-NCM path end to end without hardware: the
// "phone" namespace advertises _remoted._tcp on its side of a veth link and
// serves a stand-in RSD port that tells its UDID; the host side's monitor
// notices the new link by netlink, browses it, identifies the device over
// TCP and reports it; deleting the link reports it gone.
func TestNCMOverVeth(t *testing.T) {
	testkit.CheckLeaks(t)
	phone, host := namespaces(t)
	var nl *NetlinkLinks
	if err := host.Do(func() (err error) { nl, err = NewNetlinkLinks(nil); return err }); err != nil {
		t.Fatal(err)
	}
	defer nl.Close()

	events := make(chan Event, 8)
	m := &NCMMonitor{
		Links:   nl,
		Backoff: retry.Backoff{Min: 100 * time.Millisecond, Max: time.Second},
		Browse: func(ctx context.Context, cfg mdns.BrowseConfig) (got []mdns.Instance, err error) {
			err = errors.Join(err, host.Do(func() error { got, err = mdns.Browse(ctx, cfg); return err }))
			return got, err
		},
		Identify: func(ctx context.Context, e Event) (udid string, err error) {
			var c net.Conn
			if err := host.Do(func() (err error) {
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", e.Addr.String())
				return err
			}); err != nil {
				return "", err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			return strings.TrimSpace(line), err
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx, func(e Event) { events <- e }) }()

	vethtest.Pair(t, phone, host, "phone0", "host0", "10.78.0.1", "10.78.0.2")
	// The phone: a stand-in RSD listener and the _remoted._tcp record.
	var ln net.Listener
	if err := phone.Do(func() (err error) { ln, err = net.Listen("tcp6", "[::]:58783"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("00008030-001A2B3C3C02802E\n"))
			c.Close()
		}
	}()
	var r *mdns.Responder
	if err := phone.Do(func() (err error) {
		r, err = mdns.NewResponder(mdns.ResponderConfig{Interface: "phone0", Services: []mdns.Announcement{
			{Instance: "iPhone", Type: mdns.ServiceRemoted, Host: "iPhone.local.", Port: 58783},
		}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var phoneLL netip.Addr
	phone.Do(func() error {
		ifi, _ := net.InterfaceByName("phone0")
		addrs, _ := ifi.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				phoneLL = p.Addr()
			}
		}
		return nil
	})

	wait := func() Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-time.After(30 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}
	e := wait()
	want := netip.AddrPortFrom(phoneLL.WithZone("host0"), 58783)
	if e.Kind != Attached || e.Source != SourceNCM || e.Conn != ConnUSBNCM || e.UDID != "00008030-001A2B3C3C02802E" || e.Addr != want || e.Interface != "host0" || e.Instance != "iPhone" {
		t.Fatalf("event = %+v, want attached at %v", e, want)
	}
	if err := vethtest.Run(host, "ip", "link", "del", "host0"); err != nil {
		t.Fatal(err)
	}
	if e := wait(); e.Kind != Detached || e.UDID != "00008030-001A2B3C3C02802E" {
		t.Fatalf("event = %+v, want detached", e)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	ln.Close()
	<-acceptDone
}
