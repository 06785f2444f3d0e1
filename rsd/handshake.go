package rsd

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/iosmux/iosmux/xpc"
)

// Wire values of the Handshake (rsd.md §2.1, §2.2).
const (
	// HandshakeType is the MessageType of a Handshake.
	HandshakeType = "Handshake"
	// DeviceMessageID is the id the device's Handshake was observed with.
	DeviceMessageID = 2
	// HostMessageID is the id pmd3 sends its Handshake with (vector 11).
	HostMessageID = 1
	// ProtocolVersion is the MessagingProtocolVersion current peers send.
	ProtocolVersion = 7
	// RemoteXPCVersionFlags is what hosts announce in Properties.
	RemoteXPCVersionFlags = 0x0100000000000006
)

// Service is one entry of the Handshake's Services directory.
type Service struct {
	Name        string
	Port        uint16
	Entitlement string
	// Properties is the entry's Properties dictionary as received, wire types
	// kept; nil when the entry has none (some shim entries).
	Properties *xpc.Dict
}

// UsesRemoteXPC reports Properties.UsesRemoteXPC (absent means false). It
// alone does not decide the protocol (rsd.md §4).
func (s Service) UsesRemoteXPC() bool { return s.Properties.Bool("UsesRemoteXPC") }

// Features returns Properties.Features.
func (s Service) Features() []string { return s.Properties.Array("Features").Strings() }

// IsShim reports whether the service is reached with RSDCheckin (rsd.md §4).
func (s Service) IsShim() bool {
	return len(s.Name) > len(".shim.remote") && s.Name[len(s.Name)-len(".shim.remote"):] == ".shim.remote" ||
		s.Name == "com.apple.mobile.lockdown.remote.trusted" || s.Name == "com.apple.mobile.lockdown.remote.untrusted"
}

// entry encodes s as a Services value, in the device's key order.
func (s Service) entry() *xpc.Dict {
	d := xpc.NewDict("Entitlement", xpc.String(s.Entitlement), "Port", xpc.String(strconv.Itoa(int(s.Port))))
	if s.Properties != nil {
		d.Set("Properties", s.Properties)
	}
	return d
}

// Handshake is a parsed RSD Handshake message.
type Handshake struct {
	MessagingProtocolVersion uint64
	UUID                     xpc.UUID
	// Properties is the device description, wire types kept.
	Properties *xpc.Dict
	// Services in wire order.
	Services []Service
	// Skipped names entries dropped because their Port did not parse.
	Skipped []string
}

// Device returns the typed view of Properties.
func (h *Handshake) Device() DeviceInfo { return DeviceInfoOf(h.Properties) }

// Service returns the service with exactly this name (rsd.md §2.5).
func (h *Handshake) Service(name string) (Service, bool) {
	for _, s := range h.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// DeviceInfo is the typed view of the Handshake Properties clients read.
// Integer properties are read whatever their integer wire type, since the
// device side's types are UNCONFIRMED (rsd.md §2.3).
type DeviceInfo struct {
	UDID                     string `json:"UniqueDeviceID"`
	ProductType              string `json:"ProductType"`
	ProductName              string `json:"ProductName,omitempty"`
	OSVersion                string `json:"OSVersion"`
	BuildVersion             string `json:"BuildVersion"`
	DeviceClass              string `json:"DeviceClass,omitempty"`
	HardwareModel            string `json:"HWModel,omitempty"`
	HardwarePlatform         string `json:"HardwarePlatform,omitempty"`
	CPUArchitecture          string `json:"CPUArchitecture,omitempty"`
	SerialNumber             string `json:"SerialNumber,omitempty"`
	ModelNumber              string `json:"ModelNumber,omitempty"`
	UniqueChipID             int64  `json:"UniqueChipID,omitempty"`
	ChipID                   int64  `json:"ChipID,omitempty"`
	BoardID                  int64  `json:"BoardId,omitempty"`
	BootSessionUUID          string `json:"BootSessionUUID,omitempty"`
	RemoteXPCVersionFlags    uint64 `json:"RemoteXPCVersionFlags,omitempty"`
	SensitivePropertiesShown bool   `json:"SensitivePropertiesVisible"`
}

// DeviceInfoOf reads the typed view from a Properties dictionary.
func DeviceInfoOf(p *xpc.Dict) DeviceInfo {
	d := DeviceInfo{
		UDID: p.String("UniqueDeviceID"), ProductType: p.String("ProductType"),
		ProductName: p.String("ProductName"), OSVersion: p.String("OSVersion"),
		BuildVersion: p.String("BuildVersion"), DeviceClass: p.String("DeviceClass"),
		HardwareModel: p.String("HWModel"), HardwarePlatform: p.String("HardwarePlatform"),
		CPUArchitecture: p.String("CPUArchitecture"), SerialNumber: p.String("SerialNumber"),
		ModelNumber: p.String("ModelNumber"), SensitivePropertiesShown: p.Bool("SensitivePropertiesVisible"),
	}
	d.UniqueChipID, _ = p.Integer("UniqueChipID")
	d.ChipID, _ = p.Integer("ChipID")
	d.BoardID, _ = p.Integer("BoardId")
	switch v := p.Get("BootSessionUUID").(type) {
	case xpc.UUID:
		d.BootSessionUUID = v.String()
	case xpc.String:
		d.BootSessionUUID = string(v)
	}
	if v, ok := p.Get("RemoteXPCVersionFlags").(xpc.Uint64); ok {
		d.RemoteXPCVersionFlags = uint64(v)
	} else if n, ok := p.Integer("RemoteXPCVersionFlags"); ok {
		d.RemoteXPCVersionFlags = uint64(n)
	}
	return d
}

// ErrNotHandshake is returned by ParseHandshake for other messages.
var ErrNotHandshake = errors.New("rsd: not a Handshake message")

// ParseHandshake reads a Handshake body. Entries whose Port is not a decimal
// port are skipped and named in Skipped (go-ios and idevice skip them too);
// a missing UniqueDeviceID is an error, as in go-ios.
func ParseHandshake(body *xpc.Dict) (*Handshake, error) {
	if body.String("MessageType") != HandshakeType {
		return nil, fmt.Errorf("%w: MessageType %q", ErrNotHandshake, body.String("MessageType"))
	}
	h := &Handshake{Properties: body.Dict("Properties")}
	if n, ok := body.Integer("MessagingProtocolVersion"); ok {
		h.MessagingProtocolVersion = uint64(n)
	}
	switch v := body.Get("UUID").(type) {
	case xpc.UUID:
		h.UUID = v
	case xpc.String:
		// Tolerate text; the wire type is UNCONFIRMED for devices (rsd.md §2.2).
		h.UUID, _ = xpc.ParseUUID(string(v))
	}
	if h.Properties.String("UniqueDeviceID") == "" {
		return nil, errors.New("rsd: Handshake without Properties.UniqueDeviceID")
	}
	for name, v := range body.Dict("Services").All() {
		e, ok := v.(*xpc.Dict)
		if !ok {
			h.Skipped = append(h.Skipped, name)
			continue
		}
		port, err := strconv.ParseUint(e.String("Port"), 10, 16)
		if err != nil || port == 0 {
			h.Skipped = append(h.Skipped, name)
			continue
		}
		h.Services = append(h.Services, Service{
			Name: name, Port: uint16(port), Entitlement: e.String("Entitlement"), Properties: e.Dict("Properties"),
		})
	}
	return h, nil
}

// Body builds the Handshake message body in the device's key order
// (vector 10).
func (h *Handshake) Body() *xpc.Dict {
	services := xpc.NewDict()
	for _, s := range h.Services {
		services.Set(s.Name, s.entry())
	}
	props := h.Properties
	if props == nil {
		props = xpc.NewDict()
	}
	return xpc.NewDict(
		"MessageType", xpc.String(HandshakeType),
		"MessagingProtocolVersion", xpc.Uint64(h.MessagingProtocolVersion),
		"Properties", props,
		"Services", services,
		"UUID", h.UUID,
	)
}

// HostHandshake builds the host's Handshake body exactly as pmd3 sends it
// (vector 11).
func HostHandshake(id xpc.UUID) *xpc.Dict {
	return xpc.NewDict(
		"MessageType", xpc.String(HandshakeType),
		"MessagingProtocolVersion", xpc.Uint64(ProtocolVersion),
		"UUID", id,
		"Properties", xpc.NewDict(
			"RemoteXPCVersionFlags", xpc.Uint64(RemoteXPCVersionFlags),
			"SensitivePropertiesVisible", xpc.Bool(true),
		),
		"Services", xpc.NewDict(),
	)
}
