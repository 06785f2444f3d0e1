package sim

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

func TestDeriveIdentity(t *testing.T) {
	p := MustProfile("18.2")
	udid := regexp.MustCompile(`^0000[0-9A-F]{4}-[0-9A-F]{16}$`)
	seen := map[string]int{}
	for i := range 256 {
		id := DeriveIdentity("seed", i, p)
		if again := DeriveIdentity("seed", i, p); fmt.Sprint(again) != fmt.Sprint(id) {
			t.Fatalf("index %d: derivation not deterministic", i)
		}
		if !udid.MatchString(id.UDID) {
			t.Errorf("index %d: UDID %q", i, id.UDID)
		}
		if want := fmt.Sprintf("%08X-%016X", id.ChipID, id.ECID); id.UDID != want {
			t.Errorf("UDID %s does not carry ChipID/ECID (%s)", id.UDID, want)
		}
		if j, dup := seen[id.UDID]; dup {
			t.Errorf("indexes %d and %d share UDID %s", j, i, id.UDID)
		}
		seen[id.UDID] = i
		for _, c := range id.SerialNumber {
			if !strings.ContainsRune(serialAlphabet, c) {
				t.Errorf("serial %q has %q", id.SerialNumber, c)
			}
		}
		if err := id.validate(); err != nil {
			t.Error(err)
		}
	}
	if a, b := DeriveIdentity("one", 0, p), DeriveIdentity("two", 0, p); a.UDID == b.UDID || a.SerialNumber == b.SerialNumber {
		t.Error("different seeds gave the same device")
	}
	// iPhone XS Max (iPhone11,6) stops at iOS 18.
	for i := range 8 {
		if id := DeriveIdentity("seed", i, MustProfile("26.0")); id.ProductType == "iPhone11,6" {
			t.Errorf("an iOS 26 device is an %s", id.ProductType)
		}
	}
}

func TestParseProfile(t *testing.T) {
	tests := []struct {
		name                    string
		in                      string
		os, build               string
		mpv                     uint64
		cdp, quic, reattach, ok bool
	}{
		{name: "17.0", in: "17.0", os: "17.0", build: "21A329", mpv: 3, quic: true, ok: true},
		{name: "17.3.1", in: "17.3.1", os: "17.3.1", build: "21D61", mpv: 3, quic: true, ok: true},
		{name: "17.4", in: "ios17.4", os: "17.4", build: "21E219", mpv: 3, cdp: true, quic: true, ok: true},
		{name: "18.1", in: "18.1", os: "18.1", build: "22B83", mpv: 5, cdp: true, quic: true, ok: true},
		{name: "18.2", in: "18.2", os: "18.2", build: "22C152", mpv: 5, cdp: true, ok: true},
		{name: "27.2", in: "27.2", os: "27.2", build: "24C100", mpv: 7, cdp: true, reattach: true, ok: true},
		{name: "16", in: "16.7", ok: false},
		{name: "junk", in: "latest", ok: false},
		{name: "one part", in: "17", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseProfile(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseProfile(%q) error %v, want ok %v", tt.in, err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if p.OSVersion != tt.os || p.BuildVersion != tt.build || p.MessagingProtocolVersion != tt.mpv ||
				p.CoreDeviceProxy != tt.cdp || p.QUIC != tt.quic || p.PeerReattach != tt.reattach {
				t.Errorf("ParseProfile(%q) = %+v", tt.in, p)
			}
		})
	}
}

func TestRestoreLongVersion(t *testing.T) {
	for in, want := range map[string]string{"21A360": "21.1.360.0.0,0", "22C152": "22.3.152.0.0,0", "weird": "weird"} {
		if got := restoreLongVersion(in); got != want {
			t.Errorf("restoreLongVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseProfile(f *testing.F) {
	for _, s := range []string{"17.0", "ios17.4", "18.2", "27.2", "17.3.1", "16.7", "x", "17..1", "99.99.99"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseProfile(s)
		if err != nil {
			return
		}
		again, err := ParseProfile(p.Name)
		if err != nil || again != p {
			t.Fatalf("ParseProfile(%q) = %+v, but its name %q parses as %+v, %v", s, p, p.Name, again, err)
		}
		if p.Major() < 17 || p.BuildVersion == "" || p.MessagingProtocolVersion == 0 {
			t.Fatalf("ParseProfile(%q) = %+v", s, p)
		}
	})
}
