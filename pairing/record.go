package pairing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"

	"github.com/iosmux/iosmux/internal/safeplist"
)

// Record is a RemotePairing pair record in pymobiledevice3's format
// (remotepairing.md §8.1): an XML property list named
// remote_<identifier>.plist. Every key written is one pymobiledevice3
// knows, with its type; empty optional members are left out.
type Record struct {
	// PrivateKey is the host's Ed25519 seed (32 bytes): private_key.
	PrivateKey []byte
	// PublicKey is the host's Ed25519 public key: public_key.
	PublicKey []byte
	// RemoteUnlockHostKey is the createRemoteUnlockKey hostKey, base64 text
	// kept as text, or "": remote_unlock_host_key (always written).
	RemoteUnlockHostKey string
	// HostIdentifier is the identifier registered at M5: host_identifier.
	// pymobiledevice3 presents it in pair-verify when present, so a record
	// keeps working after the host is renamed.
	HostIdentifier string
	// HostAltIRK is the altIRK sent in the host INFO: host_alt_irk.
	HostAltIRK []byte
	// From the device's M6 INFO: peer_alt_irk, peer_udid, peer_model,
	// peer_name.
	PeerAltIRK []byte
	PeerUDID   string
	PeerModel  string
	PeerName   string
}

// Record keys (pymobiledevice3 pair_records.py / tunnel_service.py).
const (
	keyPrivateKey     = "private_key"
	keyPublicKey      = "public_key"
	keyUnlockHostKey  = "remote_unlock_host_key"
	keyHostIdentifier = "host_identifier"
	keyHostAltIRK     = "host_alt_irk"
	keyPeerAltIRK     = "peer_alt_irk"
	keyPeerUDID       = "peer_udid"
	keyPeerModel      = "peer_model"
	keyPeerName       = "peer_name"
)

// NewRecord builds the record of a completed pair-setup.
func NewRecord(res *SetupResult, unlockHostKey string) *Record {
	r := &Record{
		PrivateKey:          res.Identity.PrivateKey.Seed(),
		PublicKey:           append([]byte{}, res.Identity.PrivateKey.Public().(ed25519.PublicKey)...),
		RemoteUnlockHostKey: unlockHostKey,
		HostIdentifier:      res.Identity.Identifier,
		HostAltIRK:          append([]byte(nil), res.HostAltIRK...),
	}
	if p := res.Peer; p != nil {
		r.PeerAltIRK = append([]byte(nil), p.AltIRK...)
		r.PeerUDID, r.PeerModel, r.PeerName = p.UDID, p.Model, p.Name
	}
	return r
}

// Identity returns the identity to present in pair-verify: host_identifier
// when present, else defaultID (pymobiledevice3's rule, remotepairing.md §8.1).
func (r *Record) Identity(defaultID string) Identity {
	id := r.HostIdentifier
	if id == "" {
		id = defaultID
	}
	return Identity{Identifier: id, PrivateKey: ed25519.NewKeyFromSeed(r.PrivateKey)}
}

// String never shows key material.
func (r *Record) String() string {
	return fmt.Sprintf("pair record (host identifier %q, device %q)", r.HostIdentifier, r.PeerUDID)
}

// entries lists the plist members to write, sorted by key as Python's
// plistlib writes them (sort_keys=True).
func (r *Record) entries() []recordEntry {
	e := []recordEntry{
		{key: keyPrivateKey, data: r.PrivateKey, isData: true},
		{key: keyPublicKey, data: r.PublicKey, isData: true},
		{key: keyUnlockHostKey, str: r.RemoteUnlockHostKey},
	}
	addStr := func(k, v string) {
		if v != "" {
			e = append(e, recordEntry{key: k, str: v})
		}
	}
	addData := func(k string, v []byte) {
		if len(v) > 0 {
			e = append(e, recordEntry{key: k, data: v, isData: true})
		}
	}
	addStr(keyHostIdentifier, r.HostIdentifier)
	addData(keyHostAltIRK, r.HostAltIRK)
	addData(keyPeerAltIRK, r.PeerAltIRK)
	addStr(keyPeerUDID, r.PeerUDID)
	addStr(keyPeerModel, r.PeerModel)
	addStr(keyPeerName, r.PeerName)
	sort.Slice(e, func(i, j int) bool { return e[i].key < e[j].key })
	return e
}

type recordEntry struct {
	key    string
	str    string
	data   []byte
	isData bool
}

const plistHeader = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
`

var xmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// Marshal writes the record byte for byte as Python's plistlib.dumps does,
// so files written by either tool look the same (pair_setup.json
// resulting_pymobiledevice3_pair_record).
func (r *Record) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(plistHeader)
	for _, e := range r.entries() {
		fmt.Fprintf(&b, "\t<key>%s</key>\n", xmlEscaper.Replace(e.key))
		if !e.isData {
			fmt.Fprintf(&b, "\t<string>%s</string>\n", xmlEscaper.Replace(e.str))
			continue
		}
		// plistlib wraps base64 at 76 columns minus the indent (a tab
		// counts 8): 68 characters, i.e. 51 bytes per line.
		b.WriteString("\t<data>\n")
		for d := e.data; len(d) > 0; {
			n := min(len(d), 51)
			fmt.Fprintf(&b, "\t%s\n", base64.StdEncoding.EncodeToString(d[:n]))
			d = d[n:]
		}
		b.WriteString("\t</data>\n")
	}
	b.WriteString("</dict>\n</plist>\n")
	return b.Bytes()
}

// ParseRecord reads a record in XML or binary plist format, the ones
// pymobiledevice3 reads. Unknown keys are ignored; the key members must have
// pymobiledevice3's types and sizes.
func ParseRecord(b []byte) (*Record, error) {
	var m map[string]any
	if err := safeplist.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("pairing: pair record: %w", err)
	}
	r := &Record{}
	var bad []string
	data := func(k string, n int, required bool) []byte {
		v, ok := m[k]
		if !ok {
			if required {
				bad = append(bad, k+" missing")
			}
			return nil
		}
		d, ok := v.([]byte)
		if !ok || (n > 0 && len(d) != n) {
			bad = append(bad, fmt.Sprintf("%s is not %d bytes of data", k, n))
			return nil
		}
		return d
	}
	str := func(k string) string {
		v, ok := m[k]
		if !ok {
			return ""
		}
		s, ok := v.(string)
		if !ok {
			bad = append(bad, k+" is not a string")
		}
		return s
	}
	r.PrivateKey = data(keyPrivateKey, ed25519.SeedSize, true)
	r.PublicKey = data(keyPublicKey, ed25519.PublicKeySize, true)
	r.RemoteUnlockHostKey = str(keyUnlockHostKey)
	r.HostIdentifier = str(keyHostIdentifier)
	r.HostAltIRK = data(keyHostAltIRK, 0, false)
	r.PeerAltIRK = data(keyPeerAltIRK, 0, false)
	r.PeerUDID = str(keyPeerUDID)
	r.PeerModel = str(keyPeerModel)
	r.PeerName = str(keyPeerName)
	if len(bad) > 0 {
		return nil, fmt.Errorf("pairing: pair record: %s", strings.Join(bad, "; "))
	}
	if pub := ed25519.NewKeyFromSeed(r.PrivateKey).Public().(ed25519.PublicKey); !bytes.Equal(pub, r.PublicKey) {
		return nil, fmt.Errorf("pairing: pair record: public_key does not belong to private_key")
	}
	return r, nil
}
