package pairing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iosmux/iosmux/internal/opack"
	"github.com/iosmux/iosmux/internal/safeplist"
)

// go-ios keeps one host identity for every device, in macOS's RemotePairing
// layout (go-ios v1.3.2 ios/tunnel/pairrecord.go; remotepairing.md §8.2):
//
//	DIR/selfIdentity.plist      identifier, irk, privateKey (seed), publicKey
//	DIR/peers/<identifier>.plist identifier, info, irk, model, name, publicKey
//
// go-ios itself never writes peers/ (its StoreDeviceInfo is unused), but
// macOS's own store has them.

// GoIOSIdentity is selfIdentity.plist.
type GoIOSIdentity struct {
	Identifier string `plist:"identifier"`
	IRK        []byte `plist:"irk"`
	PrivateKey []byte `plist:"privateKey"`
	PublicKey  []byte `plist:"publicKey"`
}

// GoIOSPeer is one peers/*.plist.
type GoIOSPeer struct {
	Identifier string `plist:"identifier"`
	Info       []byte `plist:"info"`
	IRK        []byte `plist:"irk"`
	Model      string `plist:"model"`
	Name       string `plist:"name"`
	PublicKey  []byte `plist:"publicKey"`
}

// Imported is one record ImportGoIOS made.
type Imported struct {
	ID   string
	Path string
	// Peer is the go-ios peer it came from; nil for a UDID given by hand.
	Peer *GoIOSPeer
}

// ReadGoIOS reads a go-ios pair-record folder.
func ReadGoIOS(dir string) (*GoIOSIdentity, []GoIOSPeer, error) {
	b, err := os.ReadFile(filepath.Join(dir, "selfIdentity.plist"))
	if err != nil {
		return nil, nil, fmt.Errorf("pairing: go-ios identity: %w", err)
	}
	var id GoIOSIdentity
	if err := safeplist.Unmarshal(b, &id); err != nil {
		return nil, nil, fmt.Errorf("pairing: go-ios selfIdentity.plist: %w", err)
	}
	if id.Identifier == "" || len(id.PrivateKey) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("pairing: go-ios selfIdentity.plist: identifier %q, privateKey of %d bytes", id.Identifier, len(id.PrivateKey))
	}
	if pub := ed25519.NewKeyFromSeed(id.PrivateKey).Public().(ed25519.PublicKey); !bytes.Equal(pub, id.PublicKey) {
		return nil, nil, errors.New("pairing: go-ios selfIdentity.plist: publicKey does not belong to privateKey")
	}
	ents, err := os.ReadDir(filepath.Join(dir, "peers"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	var peers []GoIOSPeer
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".plist") {
			continue
		}
		pb, err := os.ReadFile(filepath.Join(dir, "peers", e.Name()))
		if err != nil {
			return nil, nil, err
		}
		var p GoIOSPeer
		if err := safeplist.Unmarshal(pb, &p); err != nil {
			return nil, nil, fmt.Errorf("pairing: go-ios peers/%s: %w", e.Name(), err)
		}
		if p.Identifier == "" {
			p.Identifier = strings.TrimSuffix(e.Name(), ".plist")
		}
		peers = append(peers, p)
	}
	sort.Slice(peers, func(i, j int) bool { return peers[i].Identifier < peers[j].Identifier })
	return &id, peers, nil
}

// peerUDID is remotepairing_udid from a peer's INFO, if it decodes.
func (p *GoIOSPeer) peerUDID() string {
	v, err := opack.Unmarshal(p.Info)
	if err != nil {
		return ""
	}
	d, _ := v.(opack.Dict)
	s, _ := d.String("remotepairing_udid")
	return s
}

// ImportGoIOS writes one pymobiledevice3 record per go-ios peer (named by
// the UDID in its INFO, else by its identifier) and one per extra UDID,
// all holding go-ios's identity and its identifier as host_identifier, so
// pair-verify presents what go-ios registered.
func ImportGoIOS(dir string, store RecordStore, udids []string) ([]Imported, error) {
	id, peers, err := ReadGoIOS(dir)
	if err != nil {
		return nil, err
	}
	if len(peers) == 0 && len(udids) == 0 {
		return nil, fmt.Errorf("pairing: %s has no peers/ entries (go-ios does not record its devices); name the devices paired with it by UDID", dir)
	}
	base := Record{
		PrivateKey:     id.PrivateKey,
		PublicKey:      id.PublicKey,
		HostIdentifier: id.Identifier,
		HostAltIRK:     id.IRK,
	}
	var out []Imported
	for i := range peers {
		p := &peers[i]
		r := base
		r.PeerAltIRK, r.PeerModel, r.PeerName, r.PeerUDID = p.IRK, p.Model, p.Name, p.peerUDID()
		name := r.PeerUDID
		if name == "" {
			name = p.Identifier
		}
		path, err := store.Save(name, &r)
		if err != nil {
			return out, err
		}
		out = append(out, Imported{ID: name, Path: path, Peer: p})
	}
	for _, u := range udids {
		r := base
		path, err := store.Save(u, &r)
		if err != nil {
			return out, err
		}
		out = append(out, Imported{ID: u, Path: path})
	}
	return out, nil
}
