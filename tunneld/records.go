package tunneld

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
)

// Classic (lockdown) pair records in the record folder, as pymobiledevice3
// keeps them next to its RemotePairing records: <UDID>.plist, written when
// it pairs over lockdown (autopair) so that a host whose usbmuxd lost its
// copy still holds the pairing, and read by the mobdev2 path, which never
// asks usbmuxd (discovery.md §5).

// classicRecords reads and writes <dir>/<UDID>.plist.
type classicRecords struct {
	store pairing.RecordStore // Dir and Owner
}

func (c classicRecords) path(udid string) (string, error) {
	if c.store.Dir == "" {
		return "", errors.New("tunneld: no pair record folder")
	}
	if udid == "" || len(udid) > 128 || strings.ContainsAny(udid, "./\\\x00") || strings.HasPrefix(udid, "remote_") {
		return "", fmt.Errorf("tunneld: bad UDID %q for a record file name", udid)
	}
	return filepath.Join(c.store.Dir, udid+".plist"), nil
}

var _ lockdown.RecordStore = classicRecords{}

// LoadRecord implements lockdown.RecordStore.
func (c classicRecords) LoadRecord(udid string) (*lockdown.PairRecord, error) { return c.load(udid) }

// SaveRecord implements lockdown.RecordStore.
func (c classicRecords) SaveRecord(udid string, rec *lockdown.PairRecord) error {
	return c.save(udid, rec)
}

// load returns the record of udid; a missing one matches fs.ErrNotExist.
func (c classicRecords) load(udid string) (*lockdown.PairRecord, error) {
	p, err := c.path(udid)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	rec, err := lockdown.ParsePairRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return rec, nil
}

// save writes udid's record atomically, mode 0600, owned by the store's
// Owner (the sudo user) when set.
func (c classicRecords) save(udid string, rec *lockdown.PairRecord) error {
	p, err := c.path(udid)
	if err != nil {
		return err
	}
	b, err := rec.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.Write(p, b, 0o600, atomicfile.MkdirAll(0o700), atomicfile.WithOwner(c.store.Owner))
}

// byWiFiMAC finds the record whose WiFiMACAddress is mac (the mobdev2
// instance name's prefix), returning its UDID (the file name).
func (c classicRecords) byWiFiMAC(mac string) (string, *lockdown.PairRecord, bool) {
	if c.store.Dir == "" || mac == "" {
		return "", nil, false
	}
	ents, err := os.ReadDir(c.store.Dir)
	if err != nil {
		return "", nil, false
	}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, "remote_") || !strings.HasSuffix(name, ".plist") {
			continue
		}
		udid := strings.TrimSuffix(name, ".plist")
		rec, err := c.load(udid)
		if err == nil && strings.EqualFold(rec.WiFiMACAddress, mac) {
			return udid, rec, true
		}
	}
	return "", nil, false
}
