package discovery

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"iter"
	"net/netip"
	"reflect"
	"testing"
)

func muxEvent(id uint32, serial, ct string) Event {
	return Event{Kind: Attached, Source: SourceUsbmux, Conn: ConnUsbmux, UDID: serial, DeviceID: id, ConnectionType: ct, ProductID: 0x12a8}
}

func TestTrackerDedup(t *testing.T) {
	tr := NewTracker()
	const dashed = "00008030-001A2B3C3C02802E"
	const undashed = "00008030001a2b3c3c02802e" // Linux usbmuxd, any case
	wifi := Event{Kind: Attached, Source: SourceRemotePairing, Conn: ConnWiFi, UDID: dashed, Interface: "wlan0", Instance: "X",
		Addr: netip.MustParseAddrPort("192.168.1.20:49152")}
	ncm := Event{Kind: Attached, Source: SourceNCM, Conn: ConnUSBNCM, UDID: dashed, Interface: "enx1", Instance: "iPhone",
		Addr: netip.MustParseAddrPort("[fe80::1%enx1]:58783")}
	usbNet := muxEvent(7, undashed, "Network")
	usb := muxEvent(3, undashed, "USB")

	steps := []struct {
		name    string
		ev      Event
		changed bool
		best    string // Key of the best path after the step, "" = gone
	}{
		{"wifi first", wifi, true, wifi.Key()},
		{"usbmux network is better", usbNet, true, usbNet.Key()},
		{"ncm is better still", ncm, true, ncm.Key()},
		{"usb best of all, undashed serial joins the dashed UDID", usb, true, usb.Key()},
		{"same again: no change", usb, false, usb.Key()},
		{"worse path leaves: no change", detach(wifi), false, usb.Key()},
		{"best leaves: next best", detach(usb), true, ncm.Key()},
		{"unknown detach: nothing", detach(muxEvent(99, "OTHER", "USB")), false, ncm.Key()},
		{"unidentified sighting is ignored", Event{Kind: Attached, Source: SourceNCM, Interface: "enx2"}, false, ncm.Key()},
		{"ncm leaves", detach(ncm), true, usbNet.Key()},
		{"last path leaves: device gone", detach(usbNet), true, ""},
	}
	for _, s := range steps {
		if got := tr.Apply(s.ev); got != s.changed {
			t.Errorf("%s: changed = %v, want %v", s.name, got, s.changed)
		}
		b, ok := tr.Best(dashed)
		if s.best == "" {
			if ok {
				t.Errorf("%s: best = %v, want none", s.name, b)
			}
			continue
		}
		if !ok || b.Key() != s.best {
			t.Errorf("%s: best = %q, want %q", s.name, b.Key(), s.best)
		}
		if b2, _ := tr.Best(undashed); b2.Key() != b.Key() {
			t.Errorf("%s: lookup by undashed UDID differs", s.name)
		}
	}
	if n := len(tr.Devices()); n != 0 {
		t.Errorf("%d devices left", n)
	}
}

func TestTrackerDevices(t *testing.T) {
	tr := NewTracker()
	tr.Apply(muxEvent(1, "B-1", "USB"))
	tr.Apply(muxEvent(2, "A-1", "Network"))
	tr.Apply(muxEvent(3, "a1", "USB"))
	got := tr.Devices()
	if len(got) != 2 || got[0].UDID != "B-1" || got[1].UDID != "A-1" {
		t.Fatalf("devices = %+v", got)
	}
	if p := got[1].Paths; len(p) != 2 || p[0].DeviceID != 3 || p[1].DeviceID != 2 {
		t.Errorf("paths of A-1 not best-first: %+v", p)
	}
}

func detach(e Event) Event { e.Kind = Detached; return e }

func TestNormalizeUDID(t *testing.T) {
	if !SameUDID("00008030-001a2b3c3c02802e", "00008030001A2B3C3C02802E") {
		t.Error("dash/case forms differ")
	}
	if SameUDID("", "") {
		t.Error("empty UDIDs match")
	}
}

// muxStream replays events, then blocks until ctx ends.
func muxStream(evs ...MuxEvent) func(context.Context) iter.Seq[MuxEvent] {
	return func(ctx context.Context) iter.Seq[MuxEvent] {
		return func(yield func(MuxEvent) bool) {
			for _, e := range evs {
				if !yield(e) {
					return
				}
			}
			<-ctx.Done()
		}
	}
}

func TestUsbmuxMonitor(t *testing.T) {
	m := &UsbmuxMonitor{Events: muxStream(
		MuxEvent{Kind: MuxConnected},
		MuxEvent{Kind: MuxAttached, DeviceID: 1, SerialNumber: "00008030001A2B3C3C02802E", ConnectionType: "USB", ProductID: 4776},
		MuxEvent{Kind: MuxAttached, DeviceID: 1, SerialNumber: "00008030001A2B3C3C02802E", ConnectionType: "USB", ProductID: 4776}, // duplicate
		MuxEvent{Kind: MuxAttached, DeviceID: 2, SerialNumber: "B", ConnectionType: "Network"},
		MuxEvent{Kind: MuxDetached, DeviceID: 9}, // unknown
		MuxEvent{Kind: MuxDetached, DeviceID: 2},
		MuxEvent{Kind: MuxAttached, DeviceID: 3, SerialNumber: "C", ConnectionType: "USB"},
		MuxEvent{Kind: MuxAttached, DeviceID: 3, SerialNumber: "D", ConnectionType: "USB"}, // id reused
		MuxEvent{Kind: MuxDisconnected},
	)}
	ctx, cancel := context.WithCancel(context.Background())
	var got []string
	done := make(chan error)
	go func() {
		done <- m.Run(ctx, func(e Event) {
			got = append(got, e.Kind.String()+" "+e.UDID)
			if len(got) == 8 {
				cancel()
			}
		})
	}()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
	want := []string{
		"attached 00008030001A2B3C3C02802E", "attached B", "detached B", "attached C",
		"detached C", "attached D", "detached 00008030001A2B3C3C02802E", "detached D",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
}

// Known answers computed with OpenSSL 3.0 (see testdata/authtag.txt).
func TestSipHashVectors(t *testing.T) {
	key := [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
	// The SipHash paper's vectors 0 and 15 (message 00 01 … 0e).
	if got := siphash24(key, nil); got != 0x726fdb47dd0e0e31 {
		t.Errorf("siphash(empty) = %#x", got)
	}
	if got := siphash24(key, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}); got != 0xa129ca6149be45e5 {
		t.Errorf("siphash(15 bytes) = %#x", got)
	}
}

func TestAuthTags(t *testing.T) {
	irk, _ := hex.DecodeString("00112233445566778899aabbccddeeff")
	tag, err := RemotePairingAuthTag(irk, "A1B2C3D4-0000-4000-8000-000000000001")
	if err != nil || tag != "g0l94Bhh" {
		t.Errorf("RemotePairingAuthTag = %q, %v; want g0l94Bhh", tag, err)
	}
	if _, err := RemotePairingAuthTag(irk[:15], "x"); err == nil {
		t.Error("short altIRK accepted")
	}
	const hostID, ident = "8A3F1C2E-1234-4ABC-9DEF-0123456789AB", "iPhone-identifier-1"
	got := Mobdev2AuthTag(hostID, ident)
	if hex.EncodeToString(got[:]) != "4f968b85e0eabb7b" {
		t.Errorf("Mobdev2AuthTag = %x", got)
	}
	b64 := base64.StdEncoding.EncodeToString(got[:])
	if !Mobdev2Matches(hostID, ident, []string{"bm9wZQ==", " " + b64 + "\n"}) {
		t.Error("matching tag not recognised")
	}
	if Mobdev2Matches(hostID, ident+"x", []string{b64}) || Mobdev2Matches("other", ident, []string{b64, "!!"}) {
		t.Error("foreign tag recognised")
	}
}
