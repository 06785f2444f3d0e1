package lockdown

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// CoreDeviceProxy is the lockdown service that carries a CDTunnel on iOS
// 17.4 and later (tunnel.md §4).
const CoreDeviceProxy = "com.apple.internal.devicecompute.CoreDeviceProxy"

// ServiceInfo is a StartService reply.
type ServiceInfo struct {
	Name string
	Port uint16 // device TCP port, host byte order
	SSL  bool   // EnableServiceSSL: TLS client handshake on the new connection
}

// StartService asks lockdownd to open a service (needs a session). The
// caller then connects to info.Port on the device (a new usbmuxd Connect or
// TCP connection) and, if info.SSL, runs ServiceTLS on it. escrowBag is
// optional (appium sends the pair record's for CoreDeviceProxy; nobody else
// does). ErrInvalidService means the device lacks the service.
func (c *Client) StartService(ctx context.Context, name string, escrowBag []byte) (ServiceInfo, error) {
	req := map[string]any{"Request": "StartService", "Service": name}
	if len(escrowBag) > 0 {
		req["EscrowBag"] = escrowBag
	}
	rep, err := c.Request(ctx, req)
	if err != nil {
		return ServiceInfo{}, fmt.Errorf("lockdown: start %s: %w", name, err)
	}
	port, ok := rep.Uint("Port")
	if !ok || port == 0 || port > 0xFFFF {
		return ServiceInfo{}, fmt.Errorf("%w: StartService %s reply without a valid Port", ErrMalformed, name)
	}
	ssl, _ := rep.Bool("EnableServiceSSL")
	return ServiceInfo{Name: name, Port: uint16(port), SSL: ssl}, nil
}

// ServiceTLS finishes a service connection: when info.SSL it runs the TLS
// client handshake with rec's host certificate on conn and returns the TLS
// conn; otherwise it returns conn. On error conn is closed. CoreDeviceProxy
// keeps the whole stream in TLS; the "handshake-only" services that drop
// back to plaintext are not handled here.
func ServiceTLS(ctx context.Context, conn net.Conn, info ServiceInfo, rec *PairRecord, timeout time.Duration) (net.Conn, error) {
	if !info.SSL {
		return conn, nil
	}
	cfg, err := clientTLSConfig(rec)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("lockdown: %s: TLS handshake: %w", info.Name, err)
	}
	return tc, nil
}

// PairConfig configures Pair.
type PairConfig struct {
	// SystemBUID is the host's BUID (usbmuxd ReadBUID); required.
	SystemBUID string
	// HostID identifies this pairing; empty means a random uppercase UUID.
	HostID string
	// HostName is shown on the device; empty means "iosmux".
	HostName string
	// PollInterval is the wait between attempts while the Trust dialog is
	// pending (pmd3 polls every second); 0 means 1 s. ctx bounds the wait.
	PollInterval time.Duration
	// OnPrompt, if set, is called once, when the device first answers
	// that its Trust dialog is showing (PairingDialogResponsePending): the
	// moment to tell the user to tap Trust. A device that trusts at once
	// never calls it.
	OnPrompt func()
	// Rand feeds key generation; nil means crypto/rand.
	Rand io.Reader
	// Now is the certificates' clock; nil means time.Now.
	Now func() time.Time
}

// Pair creates a host identity for the device and asks it to trust it
// (lockdown.md §6). While the user has not answered the Trust dialog it
// retries every PollInterval until ctx ends (ErrTrustTimeout, wrapping
// ctx's cause). Don't Trust is ErrUserDeniedPairing, a device locked with
// a passcode ErrPasswordProtected. The returned record holds the
// device's EscrowBag, UDID and Wi-Fi address; storing it (usbmuxd
// SavePairRecord, see SavePairRecord) is the caller's step.
func (c *Client) Pair(ctx context.Context, cfg PairConfig) (*PairRecord, error) {
	if cfg.SystemBUID == "" {
		return nil, errors.New("lockdown: Pair: no SystemBUID")
	}
	if cfg.HostID == "" {
		cfg.HostID = newUUID(cfg.Rand)
	}
	if cfg.HostName == "" {
		cfg.HostName = "iosmux"
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	pub, err := c.GetValue(ctx, "", "DevicePublicKey")
	if err != nil {
		return nil, fmt.Errorf("lockdown: Pair: read DevicePublicKey: %w", err)
	}
	pubPEM, ok := pub.([]byte)
	if !ok {
		return nil, fmt.Errorf("%w: DevicePublicKey is %T, want data", ErrMalformed, pub)
	}
	rec, err := NewPairRecord(cfg.Rand, pubPEM, cfg.HostID, cfg.SystemBUID, now())
	if err != nil {
		return nil, err
	}
	if v, err := c.GetValue(ctx, "", "UniqueDeviceID"); err == nil {
		rec.UDID, _ = v.(string)
	}
	if v, err := c.GetValue(ctx, "", "WiFiAddress"); err == nil {
		rec.WiFiMACAddress, _ = v.(string)
	}
	req := map[string]any{
		"Request":         "Pair",
		"PairRecord":      rec.public(),
		"HostName":        cfg.HostName,
		"ProtocolVersion": "2",
		"PairingOptions":  map[string]any{"ExtendedPairingErrors": true},
	}
	prompted := false
	for {
		rep, err := c.Request(ctx, req)
		if errors.Is(err, ErrPairingDialogResponsePending) {
			if !prompted && cfg.OnPrompt != nil {
				cfg.OnPrompt()
			}
			prompted = true
			t := time.NewTimer(cfg.PollInterval)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w: %w", ErrTrustTimeout, context.Cause(ctx))
			}
		}
		if prompted && ctx.Err() != nil {
			// The request itself was cut short while the dialog showed.
			return nil, fmt.Errorf("%w: %w", ErrTrustTimeout, context.Cause(ctx))
		}
		if err != nil {
			return nil, err
		}
		rec.EscrowBag, _ = rep.Data("EscrowBag")
		return rec, nil
	}
}

// ValidatePair asks the device whether it knows rec's pairing (lockdownd
// before iOS 7 needs it before StartSession; later ones still answer).
func (c *Client) ValidatePair(ctx context.Context, rec *PairRecord) error {
	_, err := c.Request(ctx, map[string]any{"Request": "ValidatePair", "PairRecord": rec.public(), "ProtocolVersion": "2"})
	return err
}

// Unpair makes the device forget rec's pairing.
func (c *Client) Unpair(ctx context.Context, rec *PairRecord) error {
	_, err := c.Request(ctx, map[string]any{"Request": "Unpair", "PairRecord": map[string]any{"HostID": rec.HostID}, "ProtocolVersion": "2"})
	return err
}

// newUUID returns a random uppercase UUID string, the form HostIDs and
// SessionIDs take.
func newUUID(rnd io.Reader) string {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [16]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		rand.Read(b[:])
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}
