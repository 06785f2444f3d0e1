package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/mercury"
	"github.com/iosmux/iosmux/usbmux"
	"github.com/iosmux/iosmux/xpc"
)

// The facts the dylib bridge answers CoreDeviceService with
// (docs/protocols/coredevice-schema.md §5), gathered from the
// backend's view of the device and from the sources below.

// PairingSource tells the host's pairing with a device. A Bridge without
// one takes the attached tunnel as the proof: a tunnel exists only after
// the host's pairing was verified (pair-verify, or a lockdown session
// under the pair record).
type PairingSource interface {
	PairRecord(ctx context.Context, udid string) (mercury.PairRecordState, error)
}

// UsbmuxPairing is a PairingSource for a device reached through usbmuxd:
// no record in usbmuxd is PairAbsent; a record the device's lockdownd
// accepts (ValidatePair) is PairVerified; one it refuses is PairPresent.
type UsbmuxPairing struct {
	Mux *usbmux.Client
}

// PairRecord implements PairingSource.
func (p UsbmuxPairing) PairRecord(ctx context.Context, udid string) (mercury.PairRecordState, error) {
	rec, err := lockdown.ReadPairRecord(ctx, p.Mux, udid)
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return mercury.PairAbsent, nil
	}
	if err != nil {
		return 0, err
	}
	list, err := p.Mux.ListDevices(ctx)
	if err != nil {
		return 0, err
	}
	for _, d := range list {
		if !usbmux.SameUDID(d.UDID(), udid) {
			continue
		}
		lc, err := lockdown.DialUsbmux(ctx, p.Mux, d.DeviceID, lockdown.ClientConfig{})
		if err != nil {
			return 0, err
		}
		defer lc.Close()
		if err := lc.ValidatePair(ctx, rec); err != nil {
			if errors.Is(err, lockdown.ErrInvalidHostID) {
				return mercury.PairPresent, nil
			}
			return 0, err
		}
		return mercury.PairVerified, nil
	}
	return 0, fmt.Errorf("backend: %s is not on usbmuxd", udid)
}

// deviceIDs keeps one CoreDevice UUID per physical device (by UDID) in
// StateDir/coredevice-ids.json, mode 0600: CDS knows the device by it
// across restarts.
type deviceIDs struct {
	path string
	rand io.Reader
	mu   sync.Mutex
}

func (s *deviceIDs) get(udid string) (xpc.UUID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := map[string]xpc.UUID{}
	b, err := os.ReadFile(s.path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &ids); err != nil {
			return xpc.UUID{}, fmt.Errorf("backend: %s: %w", s.path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return xpc.UUID{}, fmt.Errorf("backend: device ids: %w", err)
	}
	if u, ok := ids[udid]; ok && !u.IsZero() {
		return u, nil
	}
	u, err := xpc.NewRandomUUID(s.rand)
	if err != nil {
		return xpc.UUID{}, err
	}
	ids[udid] = u
	out, err := json.MarshalIndent(ids, "", "  ")
	if err != nil {
		return xpc.UUID{}, err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return xpc.UUID{}, err
	}
	if err := atomicfile.Write(s.path, out, 0o600); err != nil {
		return xpc.UUID{}, err
	}
	return u, nil
}

// sourceTimeout bounds one round of questions to the fact sources.
// sourceTTL is how long the image mounter's and lockdown's answers are
// reused (a change in the device's service list, a new boot or
// Bridge.Refresh asks again at once), so a device is not asked every
// scan; pairTTL is the same for the PairingSource, asked more often
// because a device can forget the host at any moment and nothing else
// shows it.
const (
	sourceTimeout = 10 * time.Second
	sourceTTL     = 30 * time.Second
	pairTTL       = 5 * time.Second
)

// sourceFacts are the fact sources' last answers for one member.
type sourceFacts struct {
	boot     *boot  // the boot they were read in
	services string // the device's service list then (serviceKey)
	at       time.Time
	name     *string // lockdown's DeviceName
	dev      developerFacts
	pairAt   time.Time
	pair     mercury.PairRecordState
}

// serviceKey is v's device service list as one comparable string.
func serviceKey(v *view) string {
	names := make([]string, 0, len(v.device.Services))
	for _, s := range v.device.Services {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return strings.Join(names, "\n")
}

// ask reads the sources again when their answers are for another boot or
// service list, older than their TTL, or a refresh was asked for. It
// returns the view to build facts from: asking the image mounter goes
// through the backend's RSD, which re-reads the device's Handshake (a DDI
// mount lists new services only in a new one).
func (br *Bridge) ask(ctx context.Context, m *member, v *view, udid string) *view {
	sf := m.src
	all := m.forced.Swap(false) || sf.boot != v.boot || sf.services != serviceKey(v) || time.Since(sf.at) >= sourceTTL
	pair := all || time.Since(sf.pairAt) >= pairTTL
	if !pair {
		return v
	}
	sctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	if br.cfg.Pairing == nil {
		sf.pair = mercury.PairVerified // the tunnel is the proof (PairingSource)
	} else {
		st, err := br.cfg.Pairing.PairRecord(sctx, udid)
		if err != nil {
			br.log.Debug("backend: pairing state unknown", "udid", udid, "err", err)
			st = mercury.PairPresent // not verified now: never claimed
		}
		sf.pair = st
	}
	sf.pairAt = time.Now()
	if all {
		if n := m.b.lockdownDeviceName(v.link, v.device); n != "" {
			sf.name = &n
		} else if sf.boot != v.boot {
			sf.name = nil // a failed read keeps the name of the same boot
		}
		var err error
		if sf.dev, err = m.b.developerFacts(sctx, udid); err != nil {
			br.log.Debug("backend: DDI and Developer Mode unknown", "udid", udid, "err", err)
		}
		sf.boot, sf.at = v.boot, time.Now()
		if nv := m.b.current(); nv != nil && nv.boot == v.boot {
			v = nv
		}
		sf.services = serviceKey(v)
	}
	m.src = sf
	return v
}

// gather builds the facts of the device m's backend serves now, or nil
// when none is attached.
func (br *Bridge) gather(ctx context.Context, m *member) *mercury.Facts {
	v := m.b.current()
	if v == nil {
		return nil
	}
	udid := v.device.Properties.String("UniqueDeviceID")
	if udid == "" {
		br.log.Warn("backend: device without a UniqueDeviceID: not offered to CoreDeviceService")
		return nil
	}
	u, err := br.ids.get(udid)
	if err != nil {
		br.log.Warn("backend: device UUID", "udid", udid, "err", err)
		return nil
	}
	v = br.ask(ctx, m, v, udid)
	src := m.src
	f := &mercury.Facts{
		DeviceUUID:        u,
		ServiceIdentifier: mercury.UUIDIdentifier(u, ""),
		Handshake:         v.device.Properties,
		DeviceName:        src.name,
		Label:             br.cfg.Label,
		// The view exists only while the tunnel lives and its Handshake
		// was read through it.
		Tunnel:        mercury.TunnelUp,
		PairRecord:    src.pair,
		DDI:           mercury.DDIState{Known: src.dev.ddiKnown, Mounted: src.dev.ddiMounted},
		DeveloperMode: src.dev.mode,
	}
	names := make([]string, 0, len(v.device.Services))
	for _, s := range v.device.Services {
		names = append(names, s.Name)
	}
	f.DDI.ServicesAdvertised = mercury.DDIServicesAdvertised(names)
	f.ExtendedInfoLoaded = f.DeviceName != nil && f.DeveloperMode != mercury.DeveloperModeUnknown
	m.counter.Stamp(f)
	return f
}
