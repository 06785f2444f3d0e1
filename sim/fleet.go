package sim

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/iosmux/iosmux/internal/runfile"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/iosmux/iosmux/usbmux"
)

// FleetConfig describes a set of simulated iPhones behind one simulated
// usbmuxd: what `iosmux sim` and `iosmux tunneld --simulate N` run.
type FleetConfig struct {
	// Count devices, numbered 0…Count-1, with identities from Seed.
	Count   int
	Seed    string
	Profile Profile
	// StateDir keeps each device's state in StateDir/device-NN and the
	// usbmuxd socket, unless SocketPath says otherwise; "" keeps nothing.
	StateDir string
	// SocketPath is the usbmuxd UNIX socket; "" means StateDir/usbmuxd,
	// or a fresh temporary directory without StateDir.
	SocketPath string
	// Loopback serves every device's untrusted RSD and network pairing on
	// 127.0.0.1 (ports chosen at first boot and kept).
	Loopback bool
	// NCM, if set, gives every device the emulated USB-NCM link (interface
	// names are numbered by device).
	NCM *NCMConfig
	// UndashedSerial: see Config.
	UndashedSerial bool
	Realism        Realism
	// DeviceEnd: see Config.
	DeviceEnd DeviceEnd
	Trust     Trust
	// LockdownKey, if set, is every device's lockdown key (tests: skips
	// RSA generation). Otherwise keys come from state or are generated.
	LockdownKey *rsa.PrivateKey
	// Services are added to every device's trusted RSD.
	Services []DeviceService
	// DeveloperMode, Passcode, SeedManifests and RebootDown: see Config.
	DeveloperMode bool
	Passcode      bool
	SeedManifests []string
	RebootDown    time.Duration
	// TSSAddr, if set, serves the DDI signing stand-in for every device
	// of the fleet there (loopback, e.g. "127.0.0.1:0"): point a host's
	// TSS URL at TSSURL.
	TSSAddr string
	Logger  *slog.Logger

	// LogRate is every device's log chatter (Config.LogRate).
	LogRate float64
}

// Fleet is a running set of devices. Its methods are safe for concurrent
// use.
type Fleet struct {
	cfg     FleetConfig
	log     *slog.Logger
	mux     *usbmux.Server
	socket  string
	tmpDir  string
	devices []*Device
	served  chan error
	tss     *tssServer

	lock      *runfile.Lock // the state folder's (or socket's), nil without
	closeOnce sync.Once
	closeErr  error
}

// StartFleet starts the usbmuxd socket and boots every device (in
// parallel: key generation dominates a cold start).
func StartFleet(cfg FleetConfig) (*Fleet, error) {
	if cfg.Count < 0 {
		return nil, fmt.Errorf("sim: fleet of %d devices", cfg.Count)
	}
	if err := checkDeviceEnd(cfg.DeviceEnd); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{cfg: cfg, log: log, served: make(chan error, 1)}
	f.socket = cfg.SocketPath
	if f.socket == "" {
		dir := cfg.StateDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "iosmux-sim-")
			if err != nil {
				return nil, fmt.Errorf("sim: %w", err)
			}
			f.tmpDir, dir = tmp, tmp
		}
		f.socket = filepath.Join(dir, "usbmuxd")
	}
	if err := os.MkdirAll(filepath.Dir(f.socket), 0o755); err != nil {
		f.cleanup()
		return nil, fmt.Errorf("sim: usbmuxd socket directory: %w", err)
	}
	// One fleet per state folder (and socket): a second one would delete
	// the first one's socket and write the same device state.
	if lockPath := f.lockPath(); lockPath != "" {
		if cfg.StateDir != "" {
			if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
				f.cleanup()
				return nil, fmt.Errorf("sim: state folder: %w", err)
			}
		}
		l, err := runfile.TryLock(lockPath)
		if err != nil {
			f.socket = "" // not ours to remove
			f.cleanup()
			if errors.Is(err, runfile.ErrLocked) {
				return nil, fmt.Errorf("sim: simulated iPhones already run on this state (%w; another 'iosmux sim' or 'iosmux tunneld --simulate'?): stop that one, or give this one another state folder", err)
			}
			return nil, fmt.Errorf("sim: %w", err)
		}
		f.lock = l
	}
	os.Remove(f.socket) // a stale socket from a previous run
	ln, err := net.Listen("unix", f.socket)
	if err != nil {
		f.cleanup()
		return nil, fmt.Errorf("sim: usbmuxd socket: %w", err)
	}
	f.mux = usbmux.NewServer(usbmux.ServerConfig{Logger: log})
	go func() { f.served <- f.mux.Serve(ln) }()

	f.devices = make([]*Device, cfg.Count)
	errs := make([]error, cfg.Count)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range cfg.Count {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			f.devices[i], errs[i] = New(f.deviceConfig(i))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		f.Close()
		return nil, err
	}
	if cfg.TSSAddr != "" {
		if f.tss, err = startTSS(cfg.TSSAddr, f.signing, log); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func (f *Fleet) deviceConfig(i int) Config {
	c := Config{
		Index: i, Seed: f.cfg.Seed, Profile: f.cfg.Profile, LockdownKey: f.cfg.LockdownKey,
		Mux: f.mux, UndashedSerial: f.cfg.UndashedSerial, Realism: f.cfg.Realism, DeviceEnd: f.cfg.DeviceEnd, Trust: f.cfg.Trust,
		Services: f.cfg.Services, LogRate: f.cfg.LogRate, Logger: f.log,
		DeveloperMode: f.cfg.DeveloperMode, Passcode: f.cfg.Passcode, SeedManifests: f.cfg.SeedManifests, RebootDown: f.cfg.RebootDown,
	}
	if f.cfg.StateDir != "" {
		c.StateDir = filepath.Join(f.cfg.StateDir, fmt.Sprintf("device-%02d", i))
	}
	if f.cfg.Loopback {
		c.RSDAddr = "127.0.0.1:0"
		c.PairingAddr = "127.0.0.1:0"
	}
	if f.cfg.NCM != nil {
		n := *f.cfg.NCM
		n.HostInterface, n.WiFiInterface = "", "" // numbered per device
		c.NCM = &n
	}
	return c
}

// UsbmuxSocket is the path of the simulated usbmuxd's UNIX socket (for
// USBMUXD_SOCKET_ADDRESS).
func (f *Fleet) UsbmuxSocket() string { return f.socket }

// Devices returns the devices in index order.
func (f *Fleet) Devices() []*Device { return f.devices }

// Device finds a device by UDID (dashes and case ignored).
func (f *Fleet) Device(udid string) (*Device, bool) {
	for _, d := range f.devices {
		if d != nil && usbmux.SameUDID(d.id.UDID, udid) {
			return d, true
		}
	}
	return nil, false
}

// FleetEndpoints is what `iosmux sim --json` prints.
type FleetEndpoints struct {
	UsbmuxSocket string      `json:"usbmuxSocket"`
	Control      string      `json:"control,omitempty"`
	TSS          string      `json:"tss,omitempty"` // the DDI signing stand-in's URL
	Devices      []Endpoints `json:"devices"`
}

// Endpoints reports every device's surfaces.
func (f *Fleet) Endpoints() FleetEndpoints {
	e := FleetEndpoints{UsbmuxSocket: f.socket, TSS: f.TSSURL(), Devices: make([]Endpoints, 0, len(f.devices))}
	for _, d := range f.devices {
		e.Devices = append(e.Devices, d.Endpoints())
	}
	return e
}

// Close closes every device (saving their pairings) and then usbmuxd.
func (f *Fleet) Close() error {
	f.closeOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, d := range f.devices {
			if d == nil {
				continue
			}
			wg.Go(func() {
				if err := d.Close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if f.tss != nil {
			f.tss.close()
		}
		if f.mux != nil {
			f.mux.Close()
			if err := <-f.served; err != nil && !strings.Contains(err.Error(), "closed") {
				errs = append(errs, err)
			}
		}
		f.cleanup()
		f.closeErr = errors.Join(errs...)
	})
	return f.closeErr
}

func (f *Fleet) cleanup() {
	if f.tmpDir != "" {
		os.RemoveAll(f.tmpDir)
	} else if f.socket != "" {
		os.Remove(f.socket)
	}
	if f.lock != nil {
		f.lock.Release(false)
	}
}

// lockPath is the lock file guarding the fleet's state folder, or its
// socket when it has no state folder; "" for a private temporary folder.
func (f *Fleet) lockPath() string {
	switch {
	case f.cfg.StateDir != "":
		return filepath.Join(f.cfg.StateDir, "fleet.lock")
	case f.cfg.SocketPath != "":
		return f.cfg.SocketPath + ".lock"
	}
	return ""
}

// checkDeviceEnd fails once for the whole fleet, before any device boots,
// when the device end cannot run here (the kernel end without root).
func checkDeviceEnd(e DeviceEnd) error {
	e, err := ParseDeviceEnd(string(e))
	if err != nil || e != DeviceEndKernel {
		return err
	}
	t, err := tunnel.NewServer(tunnel.ServerConfig{RSDPort: RSDPort, Kernel: true})
	if err != nil {
		return fmt.Errorf("sim: device end %q: %w; run as root, or use the netstack device end", e, err)
	}
	return t.Close()
}
