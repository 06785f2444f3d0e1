package lockdown

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"
)

// ServiceHandler is one lockdown service the device offers through StartService.
type ServiceHandler struct {
	// SSL makes StartService answer EnableServiceSSL = true; the device then
	// runs the TLS server handshake on the service connection (with the
	// session host's device certificate, requiring that host's client
	// certificate) before calling Serve.
	SSL bool
	// Serve handles one service connection, TLS already done when SSL. It
	// owns conn and returns when done; Server.Close closes conn.
	Serve func(conn net.Conn)
	// Available, if set, is asked at every StartService: false answers
	// InvalidService, as for a service the device lacks (services that
	// come with the developer disk image, while it is not mounted).
	Available func() bool
}

// PortListener opens device ports for started services. usbmux.PortMux
// implements it; a Wi-Fi simulation can back it with a net.Listener.
type PortListener interface {
	// ListenOnce reserves a fresh port whose next connection goes to serve.
	ListenOnce(serve func(net.Conn)) (uint16, error)
}

// TrustAnswer is the simulated user's answer to the Trust dialog.
type TrustAnswer int

// Trust answers.
const (
	TrustAccept  TrustAnswer = iota // pair
	TrustPending                    // dialog still showing: PairingDialogResponsePending
	TrustDeny                       // Don't Trust: UserDeniedPairing
	TrustLocked                     // locked with a passcode: PasswordProtected
)

// ServerConfig configures the device role.
type ServerConfig struct {
	// Values is the top-level domain GetValue serves (UniqueDeviceID,
	// ProductVersion, ProductType, DeviceName, …). DevicePublicKey is
	// filled from Key.
	Values map[string]any
	// Domains holds the other domains by name.
	Domains map[string]map[string]any
	// PublicKeys lists the top-level keys readable before a session; nil
	// means DefaultPublicKeys.
	PublicKeys []string
	// Key is the device's RSA key; nil generates one.
	Key *rsa.PrivateKey
	// Services are offered by StartService, by name.
	Services map[string]ServiceHandler
	// Ports opens service ports; required when Services is not empty.
	Ports PortListener
	// Trust answers Pair requests from unknown hosts; nil accepts.
	Trust func(hostName string) TrustAnswer
	// Timeout bounds a request's payload once its length has arrived,
	// every write and every TLS handshake; 0 means DefaultTimeout.
	Timeout time.Duration
	// Rand feeds session IDs and escrow bags; nil means crypto/rand.
	Rand io.Reader
	// Logger receives per-request debug lines; nil discards.
	Logger *slog.Logger
	// OnSession, if set, is told of every session TLS handshake the device
	// completes (for tests and the simulator's event log).
	OnSession func(hostID string, state tls.ConnectionState)
}

// DefaultPublicKeys is what the device role answers before a session.
// UNCONFIRMED: references only say a device returns "a reduced set"
// (lockdown.md §2.1). This set covers what clients read before pairing or a session:
// pmd3 (UniqueDeviceID, ProductVersion, DevicePublicKey, ProductType,
// WiFiAddress), libimobiledevice (ProductVersion) and `iosmux list`
// (DeviceName).
var DefaultPublicKeys = []string{
	"BasebandCertId", "BasebandSerialNumber", "BasebandVersion", "BoardId",
	"BuildVersion", "CPUArchitecture", "ChipID", "DeviceClass", "DeviceColor",
	"DeviceName", "DevicePublicKey", "DieID", "HardwareModel",
	"HardwarePlatform", "HasSiDP", "PartitionType", "ProductName",
	"ProductType", "ProductVersion", "ProductionSOC", "ProtocolVersion",
	"SupportedDeviceFamilies", "TelephonyCapability", "UniqueChipID",
	"UniqueDeviceID", "WiFiAddress",
}

// Server is lockdownd's side (lockdown.md §8): QueryType, Get/Set/RemoveValue,
// Pair/ValidatePair/Unpair, StartSession with TLS under the host's pairing,
// StopSession and StartService. It starts no goroutines: ServeConn and
// service connections run on the caller's goroutine (the usbmux server's).
type Server struct {
	cfg    ServerConfig
	key    *rsa.PrivateKey
	pubPEM []byte
	public map[string]bool
	log    *slog.Logger

	mu     sync.Mutex
	values map[string]map[string]any // domain → key → value; "" is top level
	hosts  map[string]*hostPairing   // by HostID
	conns  map[net.Conn]struct{}
	closed bool
}

// hostPairing is what the device keeps of a paired host.
type hostPairing struct {
	hostID     string
	systemBUID string
	hostCert   []byte // DER
	rootCert   []byte // DER
	deviceCert []byte // DER, the certificate the host issued for our key
	escrowBag  []byte
}

// NewServer returns a device with the given identity and no pairings.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if len(cfg.Services) > 0 && cfg.Ports == nil {
		return nil, errors.New("lockdown: device offers services but has no PortListener")
	}
	d := &Server{
		cfg:    cfg,
		key:    cfg.Key,
		log:    cfg.Logger,
		public: map[string]bool{},
		values: map[string]map[string]any{"": {}},
		hosts:  map[string]*hostPairing{},
		conns:  map[net.Conn]struct{}{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.key == nil {
		k, err := rsa.GenerateKey(cfg.Rand, keyBits)
		if err != nil {
			return nil, fmt.Errorf("lockdown: device key: %w", err)
		}
		d.key = k
	}
	d.pubPEM = PublicKeyPEM(&d.key.PublicKey)
	maps.Copy(d.values[""], cfg.Values)
	d.values[""]["DevicePublicKey"] = d.pubPEM
	for name, dom := range cfg.Domains {
		d.values[name] = maps.Clone(dom)
	}
	keys := cfg.PublicKeys
	if keys == nil {
		keys = DefaultPublicKeys
	}
	for _, k := range keys {
		d.public[k] = true
	}
	return d, nil
}

// PublicKeyPEM returns the DevicePublicKey value.
func (d *Server) PublicKeyPEM() []byte { return d.pubPEM }

// Value returns a stored value (domain "" is the top level).
func (d *Server) Value(domain, key string) (any, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.values[domain][key]
	return v, ok
}

// Domain returns a copy of one domain's values ("" is the top level).
func (d *Server) Domain(domain string) (map[string]any, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, ok := d.values[domain]
	return maps.Clone(dom), ok
}

// SetValue stores a value as the device itself would change it (the
// simulator's Developer Mode status), outside any host's session.
func (d *Server) SetValue(domain, key string, v any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.values[domain] == nil {
		d.values[domain] = map[string]any{}
	}
	d.values[domain][key] = v
}

// HostIDs returns the HostIDs of the paired hosts, sorted.
func (d *Server) HostIDs() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Sorted(maps.Keys(d.hosts))
}

// AddPairing makes the device trust rec's host as a successful Pair would,
// without the Trust dialog: for simulators whose host record is prepared
// ahead of time.
func (d *Server) AddPairing(rec *PairRecord) error {
	h, err := d.checkPairRecord(rec.public())
	if err != nil {
		return err
	}
	h.escrowBag = rec.EscrowBag
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts[h.hostID] = h
	return nil
}

// checkPairRecord validates the public part of a host's record (lockdown.md
// §7.1, §8):
// the device certificate must wrap our key, the host certificate must be
// signed by the root.
func (d *Server) checkPairRecord(m Message) (*hostPairing, error) {
	hostID, _ := m.String("HostID")
	if hostID == "" {
		return nil, errors.New("pair record without HostID")
	}
	buid, _ := m.String("SystemBUID")
	certs := map[string]*x509.Certificate{}
	for _, k := range []string{"DeviceCertificate", "HostCertificate", "RootCertificate"} {
		b, ok := m.Data(k)
		if !ok {
			return nil, fmt.Errorf("pair record without %s", k)
		}
		c, err := parseCertPEM(b)
		if err != nil {
			return nil, fmt.Errorf("pair record %s: %v", k, err)
		}
		certs[k] = c
	}
	if !samePublicKey(certs["DeviceCertificate"], &d.key.PublicKey) {
		return nil, errors.New("pair record DeviceCertificate is not for this device's key")
	}
	for _, k := range []string{"HostCertificate", "DeviceCertificate"} {
		if err := checkSignedBy(certs[k], certs["RootCertificate"]); err != nil {
			return nil, fmt.Errorf("pair record %s not signed by RootCertificate: %v", k, err)
		}
	}
	return &hostPairing{
		hostID:     hostID,
		systemBUID: buid,
		hostCert:   certs["HostCertificate"].Raw,
		rootCert:   certs["RootCertificate"].Raw,
		deviceCert: certs["DeviceCertificate"].Raw,
	}, nil
}

// serverTLS is the device side of session and service TLS for host h: the
// certificate h issued for our key, and h's certificate required from the
// client. libimobiledevice presents the RootCertificate (with the root
// key) as its client certificate, go-ios and pmd3 the HostCertificate, so
// either is accepted. TLS 1.0 stays allowed: libimobiledevice caps devices
// older than iOS 10 at TLS 1.0, and a simulated old device must take that.
// One Write is one record, as on the host side (clientTLSConfig).
func (d *Server) serverTLS(h *hostPairing) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{h.deviceCert}, PrivateKey: d.key}},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS10,
		// See clientTLSConfig.
		DynamicRecordSizingDisabled: true,
		// No TLS 1.3 session tickets: Go would send one right after the
		// handshake, and libimobiledevice's clients (OpenSSL under their
		// own read loop) then gave up about one service connection in ten
		// (idevicenotificationproxy post lost its post). A host never
		// resumes a lockdown session anyway: each one is a new handshake.
		SessionTicketsDisabled: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) > 0 && (bytes.Equal(raw[0], h.hostCert) || bytes.Equal(raw[0], h.rootCert)) {
				return nil
			}
			return fmt.Errorf("lockdown: client certificate is not host %s's", h.hostID)
		},
	}
}

// track registers a connection so Close can end it.
func (d *Server) track(conn net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.conns[conn] = struct{}{}
	return true
}

func (d *Server) untrack(conn net.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.conns, conn)
}

// Close closes every lockdown and service connection being served, which
// makes ServeConn and the service handlers return, and refuses new ones. It
// is idempotent.
func (d *Server) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for c := range d.conns {
		c.Close()
	}
	return nil
}

// serveService runs one service connection opened after StartService.
func (d *Server) serveService(conn net.Conn, name string, svc ServiceHandler, h *hostPairing) {
	if !d.track(conn) {
		conn.Close()
		return
	}
	defer func() {
		d.untrack(conn)
		conn.Close()
	}()
	if !svc.SSL {
		svc.Serve(conn)
		return
	}
	tc := tls.Server(conn, d.serverTLS(h))
	conn.SetDeadline(time.Now().Add(d.cfg.Timeout))
	if err := tc.Handshake(); err != nil {
		d.log.Debug("lockdown device: service TLS handshake", "service", name, "err", err)
		return
	}
	conn.SetDeadline(time.Time{})
	svc.Serve(tc)
}

func (d *Server) newID() string { return newUUID(d.cfg.Rand) }
