package usbmux

import (
	"fmt"
	"strings"
)

// Connection types reported in DeviceEntry.ConnectionType.
const (
	ConnectionUSB     = "USB"
	ConnectionNetwork = "Network"
)

// DeviceEntry is one entry of ListDevices or an Attached event: usbmuxd's
// Properties dictionary (usbmux.md §3.1). Field names are the plist keys.
type DeviceEntry struct {
	DeviceID               uint32 `plist:"DeviceID"`
	SerialNumber           string `plist:"SerialNumber"` // the UDID, as usbmuxd reports it
	ConnectionType         string `plist:"ConnectionType"`
	ConnectionSpeed        int    `plist:"ConnectionSpeed,omitempty"`
	LocationID             int    `plist:"LocationID,omitempty"`
	ProductID              int    `plist:"ProductID,omitempty"`
	USBSerialNumber        string `plist:"USBSerialNumber,omitempty"`
	NetworkAddress         []byte `plist:"NetworkAddress,omitempty"` // raw sockaddr, Network only
	EscapedFullServiceName string `plist:"EscapedFullServiceName,omitempty"`
	InterfaceIndex         int    `plist:"InterfaceIndex,omitempty"`
}

// UDID returns the serial number in Apple's canonical form. Linux usbmuxd
// reports the 25-character form of newer devices without its dash (24 hex
// digits, pmd3 issue #1388); the dash goes back after the eighth digit, as
// libusbmuxd's sanitize_udid does.
func (d DeviceEntry) UDID() string { return CanonicalUDID(d.SerialNumber) }

// CanonicalUDID adds the dash that Linux usbmuxd drops from 24-digit UDIDs;
// other forms come back unchanged.
func CanonicalUDID(s string) string {
	if len(s) == 24 && isHex(s) {
		return s[:8] + "-" + s[8:]
	}
	return s
}

// SameUDID reports whether a and b name the same device, ignoring dashes
// and letter case (pmd3 matches the same way).
func SameUDID(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "-", ""), strings.ReplaceAll(b, "-", ""))
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// SwapPort converts between a TCP port and the PortNumber usbmuxd's Connect
// carries: the port in network byte order read as a little-endian integer
// (usbmux.md §3.3; 62078 ↔ 32498). The swap is its own inverse.
func SwapPort(p uint16) uint16 { return p<<8 | p>>8 }

// request is every client→usbmuxd message; unused keys are omitted.
type request struct {
	MessageType         string `plist:"MessageType"`
	ClientVersionString string `plist:"ClientVersionString,omitempty"`
	ProgName            string `plist:"ProgName,omitempty"`
	LibUSBMuxVersion    int    `plist:"kLibUSBMuxVersion,omitempty"`
	DeviceID            uint32 `plist:"DeviceID,omitempty"`
	PortNumber          uint16 `plist:"PortNumber,omitempty"`
	PairRecordID        string `plist:"PairRecordID,omitempty"`
	PairRecordData      []byte `plist:"PairRecordData,omitempty"`
}

// reply is every usbmuxd→client message: Result, the ListDevices, ReadBUID
// and ReadPairRecord replies (which carry no MessageType) and the Listen
// events.
type reply struct {
	MessageType    string       `plist:"MessageType,omitempty"`
	Number         *uint64      `plist:"Number,omitempty"`
	DeviceList     []*reply     `plist:"DeviceList,omitempty"`
	DeviceID       uint32       `plist:"DeviceID,omitempty"`
	Properties     *DeviceEntry `plist:"Properties,omitempty"`
	BUID           string       `plist:"BUID,omitempty"`
	PairRecordData []byte       `plist:"PairRecordData,omitempty"`
}

// resultReply builds a Result message.
func resultReply(c ResultCode) *reply {
	n := uint64(c)
	return &reply{MessageType: "Result", Number: &n}
}

// parseReply decodes a message payload from usbmuxd.
func parseReply(payload []byte) (*reply, error) {
	r := new(reply)
	if err := decodePlist(payload, r); err != nil {
		return nil, err
	}
	return r, nil
}

// result returns the Number of a Result message; ok is false for any other
// message.
func (r *reply) result() (code ResultCode, ok bool) {
	if r.MessageType != "Result" || r.Number == nil {
		return 0, false
	}
	if *r.Number > 0xFFFFFFFF {
		return ResultCode(0xFFFFFFFF), true
	}
	return ResultCode(*r.Number), true
}

// device returns the Properties of a ListDevices entry or Attached event,
// filling DeviceID from the outer dictionary when Properties lacks it.
func (r *reply) device() (DeviceEntry, error) {
	if r.Properties == nil {
		return DeviceEntry{}, fmt.Errorf("%w: device entry without Properties", ErrMalformed)
	}
	d := *r.Properties
	if d.DeviceID == 0 {
		d.DeviceID = r.DeviceID
	}
	if d.SerialNumber == "" {
		return DeviceEntry{}, fmt.Errorf("%w: device %d without SerialNumber", ErrMalformed, d.DeviceID)
	}
	return d, nil
}

// devices returns the entries of a ListDevices reply.
func (r *reply) devices() ([]DeviceEntry, error) {
	if r.DeviceList == nil {
		return nil, fmt.Errorf("%w: ListDevices reply without DeviceList", ErrMalformed)
	}
	out := make([]DeviceEntry, 0, len(r.DeviceList))
	for _, e := range r.DeviceList {
		if e == nil {
			return nil, fmt.Errorf("%w: empty DeviceList entry", ErrMalformed)
		}
		d, err := e.device()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
