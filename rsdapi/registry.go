package rsdapi

import (
	"context"
	"errors"
	"time"
)

// Registry is what the HTTP APIs read and drive: the daemon's tunnel table.
// Every method may be called concurrently from many requests.
type Registry interface {
	// Tunnels returns the established tunnels in table order (the order
	// pymobiledevice3 lists them in). Tunnels still being set up are not
	// included. The slice is the caller's to keep.
	Tunnels() []Tunnel

	// StartTunnel builds a tunnel for req.UDID and blocks until it is up, it
	// failed, or ctx ends (the HTTP client went away). It is called only when
	// no established tunnel has that exact UDID. Errors map onto
	// pymobiledevice3's replies: ErrNoTask → 501 "task not created",
	// ErrTunnelFailed → 404 "something went wrong during tunnel creation",
	// anything else → 501 with the error's exception name (see
	// ExceptionNamer) and message.
	StartTunnel(ctx context.Context, req StartRequest) (Tunnel, error)

	// Cancel tears down every established tunnel whose UDID equals udid
	// exactly; tunnels being set up are left alone (pymobiledevice3's rule).
	Cancel(udid string)

	// Clear tears down every tunnel, established or in progress. Discovery
	// keeps running, so devices still present come back.
	Clear()

	// Shutdown asks the daemon to stop gracefully. It must return promptly
	// and must not wait for the HTTP servers to drain: the request that
	// called it is still being answered.
	Shutdown()
}

// Optional interfaces a Registry may implement, found by type assertion
// (like http.Flusher).

// Readier reports whether the first discovery pass has completed. The go-ios
// API answers GET /ready with 503 until it has; without Readier the API is
// always ready.
type Readier interface {
	Ready() bool
}

// ServiceRefresher re-reads the RSD service catalog of the tunnel whose
// Tunnel.UDID is udid and returns the updated tunnel. The appium API's POST …/refresh-services uses it;
// without it that route answers 503 as appium's own server does when refresh
// is not configured.
type ServiceRefresher interface {
	RefreshServices(ctx context.Context, udid string) (Tunnel, error)
}

// ExceptionNamer lets an error choose the "exception" name reported in a
// pymobiledevice3 501 reply (clients print it; some match on
// "DeviceNotFoundError").
type ExceptionNamer interface {
	ExceptionName() string
}

// Errors a Registry returns from StartTunnel to select pymobiledevice3's
// replies.
var (
	// ErrNoTask: no path to the device was found, nothing was attempted.
	ErrNoTask = errors.New("rsdapi: task not created")
	// ErrTunnelFailed: an attempt started and failed.
	ErrTunnelFailed = errors.New("rsdapi: tunnel creation failed")
	// ErrDeviceNotFound: the device is unknown to usbmuxd; reported as
	// pymobiledevice3's DeviceNotFoundError (a 501, reference behaviour).
	ErrDeviceNotFound = errors.New("rsdapi: device not found")
)

// StartRequest is GET /start-tunnel's query.
type StartRequest struct {
	UDID string
	// IP, when set, restricts the usb/wifi paths to a device found at
	// exactly this address string.
	IP string
	// Connection is "", "usbmux", "usb" or "wifi" (validated by rsdapi).
	Connection string
}

// Path says how the tunnel reaches the device.
type Path string

// Paths, in iosmux's order of preference (discovery.md §7.2).
const (
	PathUsbmuxUSB     Path = "usbmux-usb"     // CoreDeviceProxy through usbmuxd, USB
	PathUSBNCM        Path = "usb-ncm"        // RemotePairing over the USB-Ethernet link
	PathUsbmuxNetwork Path = "usbmux-network" // CoreDeviceProxy through usbmuxd, network
	PathMobdev2       Path = "mobdev2"        // CoreDeviceProxy over Wi-Fi lockdown
	PathWiFi          Path = "wifi"           // RemotePairing over Wi-Fi
)

// Service is one entry of the RSD service catalog.
type Service struct {
	Name string
	Port uint16
}

// Tunnel is one established tunnel as the APIs see it. Plain values: the
// daemon copies them out of its table.
type Tunnel struct {
	// UDID as the protocol handler reported it (lockdown UniqueDeviceID or
	// RSD/RemotePairing identifier): pymobiledevice3's grouping key.
	UDID string
	// Key is pymobiledevice3's table key (tunneld-api.md §1.2), shown as
	// "interface" by GET /, e.g. "usbmux-<serial>-USB" or "fe80::1%en7".
	Key string
	// Interface is the OS (or userspace) TUN interface name, e.g. "utun5".
	Interface string
	// Address and RSDPort are CDTunnel's serverAddress and serverRSDPort.
	Address string
	RSDPort uint16
	// Protocol is the tunnel's transport, "tcp" or "quic"
	// (establish.Protocol, which this package does not import).
	Protocol string
	Path     Path

	// usbmuxd facts, when the device is on usbmuxd (go-ios and appium key
	// on them). SerialNumber empty → UDID is used.
	SerialNumber   string
	DeviceID       uint32
	ProductID      uint32
	ConnectionType string // usbmuxd ConnectionType: "USB" or "Network"

	// Userspace is true when the tunnel is served by a userspace network
	// stack whose TCP proxy listens on UserspacePort (tunneld-api.md §2.5).
	Userspace     bool
	UserspacePort uint16
	// LocalAddress, when set (userspace mode), is a loopback address of
	// the device's own where the daemon relays its RSD port and every port
	// its RSD lists: pymobiledevice3's and appium's listings give it in
	// place of Address, which nothing outside the daemon can reach. go-ios's
	// listing keeps Address and the userspace proxy.
	LocalAddress string

	// Services is the RSD catalog fetched over the tunnel (appium lists an
	// entry as ready only when it is non-empty), CatalogAt when it was read.
	Services  []Service
	CatalogAt time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ListedAddress is the address clients are told to connect to:
// LocalAddress when the tunnel has one, else Address.
func (t *Tunnel) ListedAddress() string {
	if t.LocalAddress != "" {
		return t.LocalAddress
	}
	return t.Address
}

// serial is the identity go-ios and appium list: usbmuxd's SerialNumber.
func (t *Tunnel) serial() string {
	if t.SerialNumber != "" {
		return t.SerialNumber
	}
	return t.UDID
}
