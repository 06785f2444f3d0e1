package backend

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/xpc"
)

// identityFile is the backend's pairing identity towards clients for one
// device, and the clients paired with it: StateDir/backend-<UDID>.json,
// mode 0600, replaced atomically. It holds a private key seed: never logged.
type identityFile struct {
	Identifier string       `json:"identifier"`
	Seed       []byte       `json:"seed"`
	AltIRK     []byte       `json:"altIRK"`
	MAC        []byte       `json:"mac"`
	BTAddr     string       `json:"btAddr"`
	Hosts      []storedHost `json:"hosts,omitempty"`
}

type storedHost struct {
	Identifier string `json:"identifier"`
	PublicKey  []byte `json:"publicKey"`
	Info       []byte `json:"info,omitempty"` // M5 INFO as sent (OPACK)
}

// identityStore is an identityFile in use; it is the pairing.HostStore of
// the device role.
type identityStore struct {
	path string
	mu   sync.Mutex
	f    identityFile
}

var _ pairing.HostStore = (*identityStore)(nil)

// identityFileName is the file of a device's identity.
func identityFileName(udid string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, udid)
	return "backend-" + clean + ".json"
}

// openIdentityStore loads the identity for udid from dir or creates one
// (fresh Ed25519 seed, identifier, altIRK and MAC from r). A file that
// exists but does not parse is an error, never silently replaced: clients
// paired with it would all have to pair again.
func openIdentityStore(dir, udid string, r io.Reader) (*identityStore, error) {
	if udid == "" {
		return nil, errors.New("backend: device without a UniqueDeviceID")
	}
	s := &identityStore{path: filepath.Join(dir, identityFileName(udid))}
	b, err := os.ReadFile(s.path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s.f); err != nil {
			return nil, fmt.Errorf("backend: identity %s: %w", s.path, err)
		}
		if s.f.Identifier == "" || len(s.f.Seed) != ed25519.SeedSize || len(s.f.AltIRK) != 16 || len(s.f.MAC) != 6 {
			return nil, fmt.Errorf("backend: identity %s is incomplete", s.path)
		}
		return s, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("backend: identity: %w", err)
	}
	id, err := xpc.NewRandomUUID(r)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, ed25519.SeedSize+16+6)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("backend: identity: %w", err)
	}
	mac := buf[48:54]
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	s.f = identityFile{
		Identifier: strings.ToUpper(id.String()),
		Seed:       buf[:32], AltIRK: buf[32:48], MAC: mac,
		BTAddr: fmt.Sprintf("%02X:%02X:%02X:%02X:%02X:%02X", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backend: state dir: %w", err)
	}
	if err := s.saveLocked(); err != nil {
		return nil, err
	}
	return s, nil
}

// identity returns a copy of the identity fields.
func (s *identityStore) identity() identityFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.f
	f.Hosts = nil
	return f
}

// LookupHost implements pairing.HostStore.
func (s *identityStore) LookupHost(id string) (ed25519.PublicKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.f.Hosts {
		if h.Identifier == id && len(h.PublicKey) == ed25519.PublicKeySize {
			return ed25519.PublicKey(h.PublicKey), true
		}
	}
	return nil, false
}

// AddHost implements pairing.HostStore: it stores or replaces the host and
// writes the file before returning.
func (s *identityStore) AddHost(h pairing.PairedHost) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := storedHost{Identifier: h.Identifier, PublicKey: h.PublicKey, Info: h.InfoRaw}
	replaced := false
	for i := range s.f.Hosts {
		if s.f.Hosts[i].Identifier == h.Identifier {
			s.f.Hosts[i], replaced = e, true
		}
	}
	if !replaced {
		s.f.Hosts = append(s.f.Hosts, e)
	}
	return s.saveLocked()
}

// saveLocked writes the file atomically with mode 0600.
func (s *identityStore) saveLocked() error {
	b, err := json.MarshalIndent(&s.f, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, b, 0o600); err != nil {
		return fmt.Errorf("backend: identity: %w", err)
	}
	return nil
}
