package pairing

import (
	"crypto/md5"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/iosmux/iosmux/internal/opack"
)

// HostInfo is the INFO dictionary the host sends in pair-setup M5
// (remotepairing.md §4.7). Only AccountID matters to the
// device; the others are shown or kept by it.
type HostInfo struct {
	AltIRK       []byte // 16 bytes
	BTAddr       string
	MAC          []byte // 6 bytes
	SerialNumber string
	AccountID    string // must equal the host identifier
	Model        string
	Name         string
}

// Placeholders for the INFO members a computer has no real value for; the
// same ones pymobiledevice3, idevice and appium send.
const (
	placeholderBTAddr = "11:22:33:44:55:66"
	placeholderSerial = "AAAAAAAAAAAA"
	hostModel         = "iosmux"
)

var placeholderMAC = []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66}

// defaultHostInfo fills the placeholders around the real values.
func defaultHostInfo(id, name string, altIRK []byte) HostInfo {
	return HostInfo{
		AltIRK: altIRK, BTAddr: placeholderBTAddr, MAC: placeholderMAC,
		SerialNumber: placeholderSerial, AccountID: id, Model: hostModel, Name: name,
	}
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune, so the
// host name fits OPACK's one-byte length form (remotepairing.md §4.7).
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// encode writes the dictionary in the order of remotepairing.md §4.7.
func (h HostInfo) encode() ([]byte, error) {
	return opack.Marshal(opack.Dict{
		{Key: "altIRK", Value: h.AltIRK},
		{Key: "btAddr", Value: truncateUTF8(h.BTAddr, 255)},
		{Key: "mac", Value: h.MAC},
		{Key: "remotepairing_serial_number", Value: truncateUTF8(h.SerialNumber, 255)},
		{Key: "accountID", Value: truncateUTF8(h.AccountID, 255)},
		{Key: "model", Value: truncateUTF8(h.Model, 255)},
		{Key: "name", Value: truncateUTF8(h.Name, 255)},
	})
}

// DeviceIdentity is what a device role keeps permanently (remotepairing.md §9.1) and
// sends in pair-verify V2 and pair-setup M6.
type DeviceIdentity struct {
	// Identifier is the device pairing identifier (M6 IDENTIFIER, INFO
	// accountID, V2 inner IDENTIFIER).
	Identifier string
	// Seed is the Ed25519 long-term key seed (32 bytes).
	Seed         []byte
	AltIRK       []byte // 16 bytes
	BTAddr       string
	MAC          []byte // 6 bytes
	Model        string
	Name         string
	SerialNumber string
	UDID         string
}

// encodeInfo writes the M6 INFO dictionary (keys idevice requires plus
// those pymobiledevice3's device uses, in the order of opack.json
// "device-info-simulated-m6").
func (d *DeviceIdentity) encodeInfo() ([]byte, error) {
	return opack.Marshal(opack.Dict{
		{Key: "accountID", Value: d.Identifier},
		{Key: "altIRK", Value: d.AltIRK},
		{Key: "btAddr", Value: d.BTAddr},
		{Key: "mac", Value: d.MAC},
		{Key: "model", Value: d.Model},
		{Key: "name", Value: d.Name},
		{Key: "remotepairing_serial_number", Value: d.SerialNumber},
		{Key: "remotepairing_udid", Value: d.UDID},
	})
}

// PeerInfo is what the host learns about the device from M6.
type PeerInfo struct {
	// Identifier and PublicKey are the device pairing identifier and LTPK.
	Identifier string
	PublicKey  []byte
	// SignatureOK reports whether the M6 signature verified (real devices
	// are UNCONFIRMED to sign exactly what remotepairing.md §4.8 describes, so a mismatch is
	// not fatal).
	SignatureOK bool
	// From INFO; empty when INFO lacks them or does not decode.
	AccountID string
	AltIRK    []byte
	Model     string
	Name      string
	UDID      string
	// InfoErr is the INFO decoding error, if any (never fatal, remotepairing.md §5.2).
	InfoErr error
}

func peerInfoFrom(p *peerIdentity) *PeerInfo {
	pi := &PeerInfo{Identifier: p.identifier, PublicKey: p.ltpk, SignatureOK: p.signatureOK}
	v, err := opack.Unmarshal(p.info)
	if err != nil {
		pi.InfoErr = err
		return pi
	}
	d, ok := v.(opack.Dict)
	if !ok {
		pi.InfoErr = fmt.Errorf("INFO is %T, want a dictionary", v)
		return pi
	}
	pi.AccountID, _ = d.String("accountID")
	pi.AltIRK, _ = d.Bytes("altIRK")
	pi.Model, _ = d.String("model")
	pi.Name, _ = d.String("name")
	pi.UDID, _ = d.String("remotepairing_udid")
	return pi
}

// hostInfoFrom decodes a host's M5 INFO for the device role; failures leave
// the fields empty (a device only logs, remotepairing.md §9.4).
func hostInfoFrom(info []byte) (HostInfo, error) {
	v, err := opack.Unmarshal(info)
	if err != nil {
		return HostInfo{}, err
	}
	d, ok := v.(opack.Dict)
	if !ok {
		return HostInfo{}, fmt.Errorf("INFO is %T, want a dictionary", v)
	}
	var h HostInfo
	h.AltIRK, _ = d.Bytes("altIRK")
	h.BTAddr, _ = d.String("btAddr")
	h.MAC, _ = d.Bytes("mac")
	h.SerialNumber, _ = d.String("remotepairing_serial_number")
	h.AccountID, _ = d.String("accountID")
	h.Model, _ = d.String("model")
	h.Name, _ = d.String("name")
	return h, nil
}

// namespaceDNS is RFC 4122's DNS namespace UUID.
var namespaceDNS = [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// HostIdentifier returns pymobiledevice3's host identifier for a host name:
// the uppercase text of UUIDv3(namespace DNS, name) (remotepairing.md §8.1; the host
// name is what the OS reports, os.Hostname in Go).
func HostIdentifier(hostname string) string {
	h := md5.New()
	h.Write(namespaceDNS[:])
	h.Write([]byte(hostname))
	u := h.Sum(nil)
	u[6] = u[6]&0x0f | 0x30 // version 3
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	s := fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	return strings.ToUpper(s)
}
