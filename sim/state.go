package sim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
)

// Files of a device's state directory. Everything is written atomically
// (internal/atomicfile) with mode 0600: the directory holds keys.
const (
	identityFile = "identity.json"
	keyFile      = "lockdown-key.pem"
	hostsFile    = "remotepairing-hosts.json"
	recordFile   = "usbmux-pair-record.plist"
)

// stateDir is one device's persistent state; an empty path keeps nothing.
type stateDir string

func (s stateDir) path(name string) string { return filepath.Join(string(s), name) }

func (s stateDir) read(name string) ([]byte, error) {
	if s == "" {
		return nil, fs.ErrNotExist
	}
	return os.ReadFile(s.path(name))
}

func (s stateDir) write(name string, b []byte) error {
	if s == "" {
		return nil
	}
	if err := atomicfile.Write(s.path(name), b, 0o600, atomicfile.MkdirAll(0o700)); err != nil {
		return fmt.Errorf("sim: state %s: %w", name, err)
	}
	return nil
}

// loadIdentity returns the stored identity, or stores and returns derived.
// A stored identity keeps its hardware and keys; only a malformed file is
// an error (never silently replaced: it holds the pairing keys).
func (s stateDir) loadIdentity(derived Identity) (Identity, error) {
	b, err := s.read(identityFile)
	if errors.Is(err, fs.ErrNotExist) {
		out, _ := json.MarshalIndent(derived, "", "  ")
		return derived, s.write(identityFile, append(out, '\n'))
	}
	if err != nil {
		return Identity{}, fmt.Errorf("sim: identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return Identity{}, fmt.Errorf("sim: identity %s: %w", s.path(identityFile), err)
	}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("%w (in %s)", err, s.path(identityFile))
	}
	return id, nil
}

// lockdownKey returns the stored device RSA key, or generates and stores
// one. RSA generation is the slowest step of a device's start (tens of
// milliseconds); a state directory makes later starts skip it.
func (s stateDir) lockdownKey() (*rsa.PrivateKey, error) {
	b, err := s.read(keyFile)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("sim: %s holds no PEM block", s.path(keyFile))
		}
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("sim: %s: %w", s.path(keyFile), err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sim: lockdown key: %w", err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("sim: lockdown key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return k, s.write(keyFile, out)
}

// hostStore is the device's RemotePairing paired-host list
// (pairing.HostStore), written through to the state directory.
type hostStore struct {
	dir stateDir

	mu    sync.Mutex
	hosts map[string]storedHost
}

type storedHost struct {
	Identifier string `json:"identifier"`
	PublicKey  []byte `json:"publicKey"`
	Info       []byte `json:"info,omitempty"` // raw M5 INFO (OPACK)
}

var _ pairing.HostStore = (*hostStore)(nil)

func loadHosts(dir stateDir) (*hostStore, error) {
	h := &hostStore{dir: dir, hosts: map[string]storedHost{}}
	b, err := dir.read(hostsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sim: paired hosts: %w", err)
	}
	var list []storedHost
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("sim: paired hosts %s: %w", dir.path(hostsFile), err)
	}
	for _, sh := range list {
		if len(sh.PublicKey) != ed25519.PublicKeySize || sh.Identifier == "" {
			return nil, fmt.Errorf("sim: paired hosts %s: malformed entry %q", dir.path(hostsFile), sh.Identifier)
		}
		h.hosts[sh.Identifier] = sh
	}
	return h, nil
}

// LookupHost implements pairing.HostStore.
func (h *hostStore) LookupHost(id string) (ed25519.PublicKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sh, ok := h.hosts[id]
	return ed25519.PublicKey(sh.PublicKey), ok
}

// AddHost implements pairing.HostStore; the list is rewritten at once so
// a pairing survives a crash of the simulator.
func (h *hostStore) AddHost(p pairing.PairedHost) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hosts[p.Identifier] = storedHost{Identifier: p.Identifier, PublicKey: append([]byte(nil), p.PublicKey...), Info: p.InfoRaw}
	return h.saveLocked()
}

// Forget removes every paired host (a simulated "Reset Location & Privacy").
func (h *hostStore) Forget() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.hosts)
	return h.saveLocked()
}

// Identifiers lists the paired hosts.
func (h *hostStore) Identifiers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.hosts))
	for id := range h.hosts {
		out = append(out, id)
	}
	return out
}

func (h *hostStore) saveLocked() error {
	list := make([]storedHost, 0, len(h.hosts))
	for _, sh := range h.hosts {
		list = append(list, sh)
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return h.dir.write(hostsFile, append(b, '\n'))
}

// restoreLockdownPairing trusts again the host whose record usbmuxd held
// for this device when it last closed, and gives usbmuxd the record back
// (under both UDID spellings clients use).
//
// TODO(lockdown): a hook reporting each successful Pair would let the
// device persist pairings that were never saved to usbmuxd.
func (d *Device) restoreLockdownPairing() {
	b, err := d.state.read(recordFile)
	if err != nil {
		return
	}
	rec, err := lockdown.ParsePairRecord(b)
	if err == nil {
		err = d.ld.AddPairing(rec)
	}
	if err != nil {
		d.log.Warn("sim: stored lockdown pair record not usable", "udid", d.id.UDID, "err", err)
		return
	}
	if mux := d.cfg.Mux; mux != nil {
		mux.SetPairRecord(d.id.UDID, b)
		mux.SetPairRecord(undash(d.id.UDID), b)
	}
}

// saveLockdownPairingIfChanged is saveLockdownPairing when usbmuxd's
// record differs from the stored one (every session calls it).
func (d *Device) saveLockdownPairingIfChanged() error {
	mux := d.cfg.Mux
	if mux == nil || d.state == "" {
		return nil
	}
	old, _ := d.state.read(recordFile)
	for _, key := range []string{d.id.UDID, undash(d.id.UDID)} {
		if b, ok := mux.PairRecord(key); ok {
			if bytes.Equal(b, old) {
				return nil
			}
			return d.state.write(recordFile, b)
		}
	}
	return nil
}

// saveLockdownPairing stores the record usbmuxd holds for this device.
func (d *Device) saveLockdownPairing() error {
	mux := d.cfg.Mux
	if mux == nil || d.state == "" {
		return nil
	}
	for _, key := range []string{d.id.UDID, undash(d.id.UDID)} {
		if b, ok := mux.PairRecord(key); ok {
			return d.state.write(recordFile, b)
		}
	}
	return nil
}
