package pairing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Mode is how the device role answers pair-setup M1 (remotepairing.md §4.2, §9.4).
type Mode int

const (
	// ModeTrust: an iPhone over RSD or Wi-Fi. Send awaitingUserConsent,
	// ask ServerConfig.Consent, then M2 with password "000000" or
	// pairingRejectedWithError.
	ModeTrust Mode = iota
	// ModePIN: Apple TV style network pairing. Draw a 6-digit PIN, show it
	// through ServerConfig.ShowPIN and send M2 at once.
	ModePIN
	// ModeLockdown: the lockdown service. M2 at once, password "000000";
	// createListener is refused.
	ModeLockdown
)

func (m Mode) String() string {
	switch m {
	case ModeTrust:
		return "trust"
	case ModePIN:
		return "pin"
	case ModeLockdown:
		return "lockdown"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// PairedHost is what the device keeps about a host after pair-setup M5.
type PairedHost struct {
	Identifier string
	PublicKey  ed25519.PublicKey
	// Info is the decoded M5 INFO (zero if it did not decode; InfoRaw keeps
	// the bytes).
	Info    HostInfo
	InfoRaw []byte
}

// HostStore keeps the device's paired hosts. The device role calls it from
// its serving goroutines; implementations must be safe for concurrent use.
type HostStore interface {
	// LookupHost returns the long-term key of a paired host.
	LookupHost(identifier string) (ed25519.PublicKey, bool)
	// AddHost stores or replaces a host.
	AddHost(h PairedHost) error
}

// MemoryHosts is an in-memory HostStore.
type MemoryHosts struct {
	mu    sync.Mutex
	hosts map[string]PairedHost
}

func (m *MemoryHosts) LookupHost(id string) (ed25519.PublicKey, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.hosts[id]
	return h.PublicKey, ok
}

func (m *MemoryHosts) AddHost(h PairedHost) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hosts == nil {
		m.hosts = make(map[string]PairedHost)
	}
	m.hosts[h.Identifier] = h
	return nil
}

// Hosts returns a copy of the stored hosts.
func (m *MemoryHosts) Hosts() []PairedHost {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]PairedHost, 0, len(m.hosts))
	for _, h := range m.hosts {
		out = append(out, h)
	}
	return out
}

// ServerConfig configures the device role (simulator and proxy).
type ServerConfig struct {
	// Rand supplies every random byte; nil means crypto/rand.
	Rand io.Reader
	// Identity is the device's permanent identity.
	Identity DeviceIdentity
	// Handshake is the handshake response. In ModeLockdown
	// allowsIncomingTunnelConnections is forced false (remotepairing.md §1.4).
	Handshake HandshakeInfo
	Mode      Mode
	// Consent decides the Trust dialog in ModeTrust: accept, refuse, or an
	// error to drop the connection. It may block (a simulated user); ctx is
	// the serving context. Nil accepts at once. See ConsentAfter.
	Consent func(ctx context.Context, hostName string) (bool, error)
	// RejectDescription is sent in pairingRejectedWithError; empty means a
	// generic text.
	RejectDescription string
	// PIN fixes the ModePIN password; empty draws six random digits.
	PIN string
	// ShowPIN receives the ModePIN password, as the screen would.
	ShowPIN func(pin string)
	// Hosts stores paired hosts; nil means a private MemoryHosts.
	Hosts HostStore
	// CreateListener answers createListener; nil or an error means an
	// errorExtended reply. host is the verified host identifier.
	CreateListener func(ctx context.Context, host string, req ListenerRequest) (*Listener, error)
	// UnlockKey returns the escrow bytes sent base64 as hostKey; nil means
	// 48 random bytes.
	UnlockKey func(host string) ([]byte, error)
	// OnVerified and OnPaired, if set, are told of each successful
	// pair-verify and pair-setup (simulator logs, tests). They run on the
	// serving goroutine and must not block.
	OnVerified func(host string)
	OnPaired   func(host PairedHost)
	// Logger receives per-connection events; nil discards them.
	Logger *slog.Logger
}

// errListenerUnsupported is the text a device without a listener creator
// sends (appium and pymobiledevice3 quote it, remotepairing.md §6.3).
const errListenerUnsupported = "Unsupported operation: Tunnel listener creator not set"

// Server answers the host role on any number of connections.
type Server struct {
	cfg  ServerConfig
	rand io.Reader
	log  *slog.Logger
	ltsk ed25519.PrivateKey
	info []byte
}

// NewServer checks the identity and prepares the role.
func NewServer(cfg *ServerConfig) (*Server, error) {
	d := &Server{cfg: *cfg, rand: cfg.Rand, log: cfg.Logger}
	if d.rand == nil {
		d.rand = rand.Reader
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.cfg.Hosts == nil {
		d.cfg.Hosts = &MemoryHosts{}
	}
	if len(cfg.Identity.Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("pairing: device identity seed of %d bytes, want %d", len(cfg.Identity.Seed), ed25519.SeedSize)
	}
	if cfg.Identity.Identifier == "" {
		return nil, errors.New("pairing: device identity without an identifier")
	}
	d.ltsk = ed25519.NewKeyFromSeed(cfg.Identity.Seed)
	info, err := d.cfg.Identity.encodeInfo()
	if err != nil {
		return nil, fmt.Errorf("pairing: device INFO: %w", err)
	}
	d.info = info
	if d.cfg.Mode == ModeLockdown {
		d.cfg.Handshake.Options.AllowsIncomingTunnelConnections = false
	}
	return d, nil
}

// PublicKey returns the device's long-term public key.
func (d *Server) PublicKey() ed25519.PublicKey { return d.ltsk.Public().(ed25519.PublicKey) }

// Serve answers one connection until the host closes it (nil), ctx ends,
// the host breaks the protocol in a way a device answers by closing
// (an encrypted message that does not open or arrives before a session,
// remotepairing.md §9.3/§9.5), or t fails. It does not close t.
func (d *Server) Serve(ctx context.Context, t Transport) error {
	s := &deviceSession{d: d, t: t, log: d.log}
	return s.run(ctx)
}

// ConsentAfter returns a Consent func for a simulated user who taps Trust
// (accept) or Don't Trust after delay. The wait ends early with ctx.
func ConsentAfter(delay time.Duration, accept bool) func(context.Context, string) (bool, error) {
	return func(ctx context.Context, _ string) (bool, error) {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			return accept, nil
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// sixDigits draws a PIN uniformly from 000000–999999.
func sixDigits(r io.Reader) (string, error) {
	var b strings.Builder
	for b.Len() < 6 {
		x, err := readRand(r, 1)
		if err != nil {
			return "", err
		}
		if x[0] < 250 { // 250 = 25·10: no modulo bias
			b.WriteByte('0' + x[0]%10)
		}
	}
	return b.String(), nil
}
