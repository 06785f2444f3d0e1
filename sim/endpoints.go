package sim

import (
	"encoding/hex"
	"errors"
	"net"
)

// Endpoints is where a device can be reached now. Addresses are host:port;
// empty fields are surfaces that are off or down at the moment.
type Endpoints struct {
	UDID         string `json:"udid"`
	DeviceName   string `json:"deviceName"`
	ProductType  string `json:"productType"`
	Profile      string `json:"profile"`
	OSVersion    string `json:"osVersion"`
	BuildVersion string `json:"buildVersion"`
	State        string `json:"state"`
	// DeviceEnd carries the device's end of its tunnels (netstack or
	// kernel).
	DeviceEnd string `json:"deviceEnd"`
	// BootSessionUUID and RSDUUID change on every boot.
	BootSessionUUID string `json:"bootSessionUUID,omitempty"`
	RSDUUID         string `json:"rsdUUID,omitempty"`
	// UsbmuxDeviceID is the device's id in the simulated usbmuxd (new on
	// every plug-in).
	UsbmuxDeviceID uint32 `json:"usbmuxDeviceID,omitempty"`
	// UntrustedRSD is the loopback stand-in for USB-NCM.
	UntrustedRSD string `json:"untrustedRSD,omitempty"`
	// NCM is the emulated USB-NCM link.
	NCM *NCMEndpoints `json:"ncm,omitempty"`
	// NetworkPairing is RPPairing over TCP (loopback).
	NetworkPairing string `json:"networkPairing,omitempty"`
	// TunnelAddress and TrustedRSDPort are the device's side of every
	// tunnel this boot (serverAddress, serverRSDPort).
	TunnelAddress  string `json:"tunnelAddress,omitempty"`
	TrustedRSDPort uint16 `json:"trustedRSDPort,omitempty"`
	// DeveloperMode is on; DDI is the SHA-384 (hex) of the mounted
	// developer disk image, "" when none is.
	DeveloperMode bool   `json:"developerMode"`
	DDI           string `json:"ddi,omitempty"`
}

// NCMEndpoints describes the emulated USB-NCM (and Wi-Fi) links.
type NCMEndpoints struct {
	// HostInterface is the host's end of the USB link; DeviceAddress is
	// the device's link-local address on it (the untrusted RSD listens on
	// port 58783 there and _remoted._tcp is answered).
	HostInterface string `json:"hostInterface,omitempty"`
	DeviceAddress string `json:"deviceAddress,omitempty"`
	UntrustedRSD  string `json:"untrustedRSD,omitempty"`
	// WiFi* are the Wi-Fi link and RPPairing (_remotepairing._tcp).
	WiFiInterface  string `json:"wifiInterface,omitempty"`
	WiFiAddress    string `json:"wifiAddress,omitempty"`
	NetworkPairing string `json:"networkPairing,omitempty"`
}

// Endpoints reports the device's surfaces.
func (d *Device) Endpoints() Endpoints {
	e := Endpoints{
		UDID: d.id.UDID, DeviceName: d.id.DeviceName, ProductType: d.id.ProductType,
		Profile: d.prof.Name, OSVersion: d.prof.OSVersion, BuildVersion: d.prof.BuildVersion,
		State: d.State().String(), DeveloperMode: d.DeveloperMode(), DeviceEnd: string(d.deviceEnd()),
	}
	if dg, ok := d.MountedDDI(); ok {
		e.DDI = hex.EncodeToString(dg)
	}
	b := d.currentBoot()
	if b == nil {
		return e
	}
	e.BootSessionUUID = b.session.String()
	e.RSDUUID = b.rsdUUID.String()
	e.NetworkPairing = b.netAddr
	e.TunnelAddress = b.tdev.Address().String()
	e.TrustedRSDPort = b.tdev.RSDPort()
	var ncm NCMEndpoints
	if b.wifi != nil {
		ncm.WiFiInterface = b.wifi.hostIf
		ncm.WiFiAddress = b.wifi.deviceAddr.String()
		ncm.NetworkPairing = b.wifi.service
	}
	b.mu.Lock()
	if p := b.plug; p != nil {
		e.UsbmuxDeviceID = p.deviceID
		e.UntrustedRSD = p.rsdAddr
		if p.ncm != nil {
			ncm.HostInterface = p.ncm.hostIf
			ncm.DeviceAddress = p.ncm.deviceAddr.String()
			ncm.UntrustedRSD = p.ncm.service
		}
	}
	b.mu.Unlock()
	if ncm != (NCMEndpoints{}) {
		e.NCM = &ncm
	}
	return e
}

// TrustedService returns the tunnel port of a trusted service this boot,
// 0 if the device is down or lists no such service.
func (d *Device) TrustedService(name string) uint16 {
	b := d.currentBoot()
	if b == nil {
		return 0
	}
	return b.trusted.services.port(name)
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }

// deviceEnd is the device end the device runs.
func (d *Device) deviceEnd() DeviceEnd {
	e, _ := ParseDeviceEnd(string(d.cfg.DeviceEnd))
	return e
}
