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

// DeveloperSource tells the developer disk image's mount state and the
// Developer Mode status (the image mounter and amfi clients). Without one,
// both are unknown: DDI availability is then known only when the device
// lists no DDI service, and Developer Mode is not claimed.
type DeveloperSource interface {
	DDIMounted(ctx context.Context, udid string) (bool, error)
	DeveloperMode(ctx context.Context, udid string) (mercury.DeveloperMode, error)
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

// sourceTimeout bounds one question to a fact source; sourceTTL is how
// long an answer is reused (Bridge.Refresh asks again at once), so a
// device is not asked every scan.
const (
	sourceTimeout = 5 * time.Second
	sourceTTL     = 30 * time.Second
)

// sourceFacts are the last answers of the fact sources for one view.
type sourceFacts struct {
	view       *view
	at         time.Time
	pair       mercury.PairRecordState
	ddiKnown   bool
	ddiMounted bool
	devMode    mercury.DeveloperMode
}

// askSources refreshes br.sources when they are for another view, older
// than sourceTTL, or a refresh was asked for.
func (br *Bridge) askSources(ctx context.Context, v *view, udid string) {
	br.mu.Lock()
	fresh := br.sources.view == v && time.Since(br.sources.at) < sourceTTL && !br.forced
	br.forced = false
	br.mu.Unlock()
	if fresh {
		return
	}
	sf := sourceFacts{view: v, at: time.Now(), pair: mercury.PairVerified}
	sctx, cancel := context.WithTimeout(ctx, sourceTimeout)
	defer cancel()
	if br.cfg.Pairing != nil {
		st, err := br.cfg.Pairing.PairRecord(sctx, udid)
		if err != nil {
			br.log.Debug("backend: pairing state unknown", "udid", udid, "err", err)
			st = mercury.PairPresent // not verified now: never claimed
		}
		sf.pair = st
	}
	if br.cfg.Developer != nil {
		if m, err := br.cfg.Developer.DDIMounted(sctx, udid); err == nil {
			sf.ddiKnown, sf.ddiMounted = true, m
		} else {
			br.log.Debug("backend: DDI state unknown", "udid", udid, "err", err)
		}
		if dm, err := br.cfg.Developer.DeveloperMode(sctx, udid); err == nil {
			sf.devMode = dm
		} else {
			br.log.Debug("backend: Developer Mode unknown", "udid", udid, "err", err)
		}
	}
	br.mu.Lock()
	br.sources = sf
	br.mu.Unlock()
}

// gather builds the facts of the device the backend serves now, or nil
// when none is attached. name caches lockdown's DeviceName per view.
func (br *Bridge) gather(ctx context.Context) (*mercury.Facts, *view) {
	v := br.b.current()
	if v == nil {
		return nil, nil
	}
	props := v.device.Properties
	udid := props.String("UniqueDeviceID")
	if udid == "" {
		br.log.Warn("backend: device without a UniqueDeviceID: not offered to CoreDeviceService")
		return nil, nil
	}
	u, err := br.ids.get(udid)
	if err != nil {
		br.log.Warn("backend: device UUID", "udid", udid, "err", err)
		return nil, nil
	}
	f := &mercury.Facts{
		DeviceUUID:        u,
		ServiceIdentifier: mercury.UUIDIdentifier(u, ""),
		Handshake:         props,
		Label:             br.cfg.Label,
		// The view exists only while the tunnel lives and its Handshake
		// was read through it.
		Tunnel:     mercury.TunnelUp,
		PairRecord: mercury.PairVerified,
	}
	names := make([]string, 0, len(v.device.Services))
	for _, s := range v.device.Services {
		names = append(names, s.Name)
	}
	f.DDI.ServicesAdvertised = mercury.DDIServicesAdvertised(names)

	br.mu.Lock()
	name, cached := br.names[v]
	br.mu.Unlock()
	if !cached {
		n := br.b.lockdownDeviceName(v.link, v.device)
		if n != "" {
			name = &n
		}
		br.mu.Lock()
		clear(br.names)
		br.names[v] = name
		br.mu.Unlock()
	}
	f.DeviceName = name

	br.askSources(ctx, v, udid)
	br.mu.Lock()
	src := br.sources
	br.mu.Unlock()
	if br.cfg.Pairing != nil {
		f.PairRecord = src.pair
	}
	f.DDI.Known, f.DDI.Mounted = src.ddiKnown, src.ddiMounted
	f.DeveloperMode = src.devMode
	f.ExtendedInfoLoaded = f.DeviceName != nil && f.DeveloperMode != mercury.DeveloperModeUnknown
	br.counter.Stamp(f)
	return f, v
}
