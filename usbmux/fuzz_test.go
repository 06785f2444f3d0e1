package usbmux

import (
	"bytes"
	"reflect"
	"testing"
	"unicode/utf8"

	"howett.net/plist"
)

func fuzzSeeds(f *testing.F) [][]byte {
	d := usbDev
	d.DeviceID = 1
	n := netDev
	n.DeviceID = 2
	payloads := []any{
		deviceListReply{DeviceList: []*reply{{MessageType: "Attached", DeviceID: 1, Properties: &d}, {MessageType: "Attached", DeviceID: 2, Properties: &n}}},
		deviceListReply{DeviceList: []*reply{}},
		resultReply(ResultConnRefused),
		&reply{BUID: "30142955-444094379208051516"},
		&reply{PairRecordData: []byte("<plist/>")},
		&reply{MessageType: "Attached", DeviceID: 1, Properties: &d},
		&reply{MessageType: "Detached", DeviceID: 1},
		&reply{MessageType: "Paired", DeviceID: 1},
	}
	var out [][]byte
	for i, p := range payloads {
		for _, format := range []int{plist.XMLFormat, plist.BinaryFormat} {
			b, err := plist.Marshal(p, format)
			if err != nil {
				f.Fatal(err)
			}
			out = append(out, AppendPacket(nil, uint32(i), b))
		}
	}
	return out
}

func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[:HeaderLen])
	}
	f.Add([]byte{0x0f, 0x03, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b, 0)
		if err != nil {
			return
		}
		if h.Length < HeaderLen || h.Length > MaxMessageLen {
			t.Fatalf("accepted length %d", h.Length)
		}
		if got := h.Append(nil); !bytes.Equal(got, b[:HeaderLen]) {
			t.Fatalf("re-encoded %x, read %x", got, b[:HeaderLen])
		}
	})
}

// FuzzParsePacket runs the client's whole reply path: framing, plist
// decoding, and each reading of the decoded reply. Whatever decodes must
// re-encode and decode to the same devices and events.
func FuzzParsePacket(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, payload, _, err := ParsePacket(b, 0)
		if err != nil {
			return
		}
		checkReply(t, payload)
	})
}

// FuzzReply fuzzes the plist payload alone, where FuzzParsePacket spends
// most inputs on the header.
func FuzzReply(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s[HeaderLen:])
	}
	f.Fuzz(checkReply)
}

func checkReply(t *testing.T, payload []byte) {
	{
		r, err := parseReply(payload)
		if err != nil {
			return
		}
		r.result()
		if devs, err := r.devices(); err == nil && validUTF8(devs) {
			list := deviceListReply{DeviceList: make([]*reply, len(devs))}
			for i := range devs {
				list.DeviceList[i] = &reply{MessageType: "Attached", DeviceID: devs[i].DeviceID, Properties: &devs[i]}
			}
			// Binary: XML cannot carry every string a binary plist can (NUL).
			enc, err := plist.Marshal(list, plist.BinaryFormat)
			if err != nil {
				t.Fatalf("re-encode: %v", err)
			}
			r2, err := parseReply(enc)
			if err != nil {
				t.Fatalf("decode re-encoded list: %v", err)
			}
			devs2, err := r2.devices()
			if err != nil || !reflect.DeepEqual(devs, devs2) && !(len(devs) == 0 && len(devs2) == 0) {
				t.Fatalf("round trip: %+v, %v; want %+v", devs2, err, devs)
			}
		}
		if ev, err := r.event(); err == nil && ev.Kind == Attached && ev.Device.SerialNumber == "" {
			t.Fatal("Attached event without serial accepted")
		}
	}
}

// FuzzRequest covers the server's request decoding.
func FuzzRequest(f *testing.F) {
	c := NewClient(ClientConfig{})
	for _, mt := range []string{"ListDevices", "Listen", "ReadBUID"} {
		b, _ := plist.Marshal(c.newRequest(mt), plist.XMLFormat)
		f.Add(b)
	}
	r := c.newRequest("SavePairRecord")
	r.PairRecordID, r.PairRecordData, r.DeviceID = "abc", []byte{1, 2, 3}, 4
	b, _ := plist.Marshal(r, plist.BinaryFormat)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var req request
		if decodePlist(b, &req) != nil {
			return
		}
		if _, err := plist.Marshal(&req, plist.XMLFormat); err != nil {
			t.Fatalf("re-encode accepted request: %v", err)
		}
	})
}

// validUTF8 reports whether every string of devs is valid UTF-8: plist
// encoders replace invalid bytes, so other strings cannot round-trip and
// are not a fault of ours.
func validUTF8(devs []DeviceEntry) bool {
	for _, d := range devs {
		for _, s := range []string{d.SerialNumber, d.ConnectionType, d.USBSerialNumber, d.EscapedFullServiceName} {
			if !utf8.ValidString(s) {
				return false
			}
		}
	}
	return true
}
