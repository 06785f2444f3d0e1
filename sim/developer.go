package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/amfi"
	"github.com/iosmux/iosmux/services/mounter"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
)

// The developer side of the simulated iPhone (services.md §4, §5):
// Developer Mode, a passcode, and the mobile_image_mounter's state, served
// by the amfi and mounter device roles over RSD and lockdown alike. What a real device does where the
// references are silent is decided here (SIM):
//
//   - Developer Mode starts off on a new device and is kept in the state
//     directory across reboots and restarts. Arming it (amfi action 1)
//     answers success and, a quarter second later, reboots the device for
//     DefaultRebootDown (Config.RebootDown); the
//     next boot waits for acceptance (action 2), which turns it on. Accept
//     at any other time is refused with "Developer Mode is not waiting for
//     acceptance". Arming with a passcode set is refused with "Device has
//     a passcode set" (pmd3's text); arming while on succeeds and does
//     nothing.
//   - The personalization nonce and the manifests kept per image survive
//     reboots (a re-mount after a reboot takes the offline branch); the
//     mount itself does not. Manifests are the TSS stand-in's tickets
//     (tss.SimTicket), checked at MountImage.
//   - While the DDI is mounted the trusted RSD lists the DDI services the
//     simulator serves (coredevice.go: appservice, deviceinfo,
//     openstdiosocket, debugproxy) on fresh ports; unmount and reboot
//     unlist them.

// Developer Mode states, as kept on disk.
const (
	devModeOff      = "off"
	devModeArmed    = "armed"    // armed, reboot pending
	devModeAwaiting = "awaiting" // rebooted, waiting for acceptance
	devModeOn       = "on"
)

// DefaultRebootDown is how long a device armed for Developer Mode stays
// down (go-ios polls every 10 s, so any shorter delay suits it).
const DefaultRebootDown = 2 * time.Second

const developerFile = "developer.json"

type developerState struct {
	DeveloperMode string        `json:"developerMode"`
	Revealed      bool          `json:"revealed,omitempty"`
	Mounter       mounter.State `json:"mounter"`
}

type developer struct {
	d       *Device
	mounter *mounter.Server
	amfi    *amfi.Server

	mu       sync.Mutex
	mode     string
	revealed bool
	passcode bool
}

// refusal is an amfi refusal: its text goes to the host as the reply's
// Error, as the device words it.
type refusal string

func (r refusal) Error() string { return string(r) }

const (
	refusedPasscode = refusal("Device has a passcode set") // pmd3's text
	refusedAccept   = refusal("Developer Mode is not waiting for acceptance: enable it first and let the device reboot")
)

var _ amfi.Switch = (*developer)(nil)

func newDeveloper(d *Device) (*developer, error) {
	dv := &developer{d: d, mode: devModeOff, passcode: d.cfg.Passcode}
	dv.mounter = mounter.NewServer(mounter.ServerConfig{
		Identifiers:             dv.identifiers,
		DeveloperMode:           dv.DeveloperMode,
		Verify:                  dv.verify,
		OnChange:                dv.mounterChanged,
		EmptyLookupWhileMounted: d.prof.major >= 27,
	})
	dv.amfi = &amfi.Server{Device: dv, AfterArm: dv.afterArm}
	b, err := d.state.read(developerFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if d.cfg.DeveloperMode {
			dv.mode = devModeOn
		}
	case err != nil:
		return nil, fmt.Errorf("sim: developer state: %w", err)
	default:
		var st developerState
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("sim: developer state %s: %w", d.state.path(developerFile), err)
		}
		switch st.DeveloperMode {
		case devModeOff, devModeArmed, devModeAwaiting, devModeOn:
			dv.mode = st.DeveloperMode
		default:
			return nil, fmt.Errorf("sim: developer state %s: Developer Mode %q", d.state.path(developerFile), st.DeveloperMode)
		}
		dv.revealed = st.Revealed
		dv.mounter.Restore(st.Mounter)
	}
	for _, dir := range d.cfg.SeedManifests {
		if err := dv.seed(dir); err != nil {
			return nil, err
		}
	}
	return dv, dv.save()
}

// identifiers are the PersonalizationIdentifiers: the device's BoardId,
// ChipID and ECID, security domain 1 and a production, secure device.
func (dv *developer) identifiers() map[string]any {
	id := dv.d.id
	return map[string]any{
		"BoardId": uint64(id.BoardID), "ChipID": uint64(id.ChipID), "UniqueChipID": id.ECID, "SecurityDomain": uint64(1),
		"EffectiveProductionStatusAp": true, "EffectiveSecurityModeAp": true,
		"CertificateProductionStatus": true, "CertificateSecurityMode": true,
	}
}

// verify accepts only the TSS stand-in's ticket for this device's ECID,
// current nonce and the image and trust cache being mounted.
func (dv *developer) verify(ticket, nonce, img, tc []byte) error {
	if !bytes.Equal(ticket, tss.SimTicket(dv.d.id.ECID, nonce, img, tc)) {
		return mounter.ErrTicketMismatch
	}
	return nil
}

// signing is what the TSS stand-in knows of this device.
func (dv *developer) signing() tss.KnownDevice {
	id := dv.d.id
	return tss.KnownDevice{ECID: id.ECID, BoardID: uint64(id.BoardID), ChipID: uint64(id.ChipID), Nonce: dv.mounter.Nonce()}
}

// seed keeps a manifest for the DDI at dir, as if it had been mounted
// before, so that clients which cannot reach the stand-in (go-ios signs at
// Apple over HTTPS) take the offline branch.
func (dv *developer) seed(dir string) error {
	b, err := ddi.Open(dir)
	if err != nil {
		return fmt.Errorf("sim: seed manifest: %w", err)
	}
	id, err := b.Manifest.Select(uint64(dv.d.id.BoardID), uint64(dv.d.id.ChipID))
	if err != nil {
		dv.d.log.Info("sim: not seeding a manifest: the DDI lacks this device's identity", "udid", dv.d.id.UDID, "dir", dir)
		return nil
	}
	f, err := b.Files(id)
	if err != nil {
		return fmt.Errorf("sim: seed manifest: %w", err)
	}
	img, err := ddi.Digest(f.Image)
	if err != nil {
		return fmt.Errorf("sim: seed manifest: %w", err)
	}
	tc, err := ddi.Digest(f.TrustCache)
	if err != nil {
		return fmt.Errorf("sim: seed manifest: %w", err)
	}
	ticket := tss.SimTicket(dv.d.id.ECID, dv.mounter.Nonce(), img, tc)
	dv.mounter.StoreManifest(img, mounter.Manifest{Ticket: ticket, TrustCacheDigest: tc})
	return nil
}

// DeveloperMode implements amfi.Switch.
func (dv *developer) DeveloperMode() bool {
	dv.mu.Lock()
	defer dv.mu.Unlock()
	return dv.mode == devModeOn
}

// Reveal implements amfi.Switch.
func (dv *developer) Reveal() error {
	dv.mu.Lock()
	dv.revealed = true
	dv.mu.Unlock()
	return dv.save()
}

// Arm implements amfi.Switch.
func (dv *developer) Arm() error {
	dv.mu.Lock()
	switch {
	case dv.passcode:
		dv.mu.Unlock()
		return refusedPasscode
	case dv.mode == devModeOn:
		dv.mu.Unlock()
		return nil
	}
	dv.mode = devModeArmed
	dv.mu.Unlock()
	return dv.save()
}

// Accept implements amfi.Switch.
func (dv *developer) Accept() error {
	dv.mu.Lock()
	if dv.mode != devModeAwaiting {
		dv.mu.Unlock()
		return refusedAccept
	}
	dv.mode = devModeOn
	dv.mu.Unlock()
	return dv.save()
}

// rebootAfterArm is how long after answering the arm the device goes down
// (SIM): long enough for the reply to cross a tunnel before the reboot
// ends it, as it does from a real device.
const rebootAfterArm = 250 * time.Millisecond

// afterArm reboots the device once the arm reply has left. It runs on the
// amfi connection's goroutine, which the reboot waits for: hand it off.
func (dv *developer) afterArm() {
	d := dv.d
	down := d.cfg.RebootDown
	if down <= 0 {
		down = DefaultRebootDown
	}
	d.wg.Go(func() {
		t := time.NewTimer(rebootAfterArm)
		defer t.Stop()
		select {
		case <-t.C:
		case <-d.life.Done():
			return
		}
		if err := d.Reboot(down); err != nil && !errors.Is(err, errClosed) {
			d.log.Warn("sim: reboot after arming Developer Mode", "udid", d.id.UDID, "err", err)
		}
	})
}

// onBoot runs as a boot starts: an armed Developer Mode now waits for
// acceptance, and nothing is mounted.
func (dv *developer) onBoot() {
	dv.mounter.Reset()
	dv.mu.Lock()
	changed := dv.mode == devModeArmed
	if changed {
		dv.mode = devModeAwaiting
	}
	dv.mu.Unlock()
	if changed {
		if err := dv.save(); err != nil {
			dv.d.log.Warn("sim: saving the developer state", "udid", dv.d.id.UDID, "err", err)
		}
	}
}

// mounterChanged follows the mounter: RSD lists the DDI services while
// mounted, and the nonce and manifests are saved.
func (dv *developer) mounterChanged() {
	_, mounted := dv.mounter.Mounted()
	dv.d.diag.ddiMounted(mounted)
	if b := dv.d.currentBoot(); b != nil && b.trusted != nil {
		if err := b.trusted.services.setDDI(mounted); err != nil {
			dv.d.log.Warn("sim: listing the DDI services", "udid", dv.d.id.UDID, "err", err)
		}
	}
	if err := dv.save(); err != nil {
		dv.d.log.Warn("sim: saving the developer state", "udid", dv.d.id.UDID, "err", err)
	}
}

// save writes the state and publishes the status as lockdownd's value.
func (dv *developer) save() error {
	dv.mu.Lock()
	st := developerState{DeveloperMode: dv.mode, Revealed: dv.revealed, Mounter: dv.mounter.State()}
	on := dv.mode == devModeOn
	dv.mu.Unlock()
	if ld := dv.d.ld; ld != nil {
		ld.SetValue(amfi.StatusDomain, amfi.StatusKey, on)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return dv.d.state.write(developerFile, append(b, '\n'))
}

// developerServices are the developer services the simulator serves,
// each registered once for RSD and, with a lockdown name, for lockdownd.
func (d *Device) developerServices() []DeviceService {
	dv := d.dev
	return []DeviceService{
		{Name: reach.Mounter.RSD, Lockdown: reach.Mounter.Lockdown, Entitlement: LockdownTrusted, Handler: dv.mounter.Serve},
		{Name: reach.AMFI.RSD, Lockdown: reach.AMFI.Lockdown, Entitlement: LockdownTrusted, Handler: dv.amfi.Serve},
	}
}

// lockdownServices offers every Handler service with a lockdown name
// through StartService (with service TLS, services.md §1.1), DDI ones only
// while the DDI is mounted.
func (d *Device) lockdownServices(list []DeviceService, into map[string]lockdown.ServiceHandler) {
	for _, s := range list {
		if s.Lockdown == "" || s.Handler == nil {
			continue
		}
		h := s.Handler
		ls := lockdown.ServiceHandler{SSL: true, Serve: func(conn net.Conn) {
			b := d.currentBoot()
			if b == nil {
				return
			}
			h(b.ctx, conn)
		}}
		if s.DDI {
			ls.Available = func() bool { _, ok := d.dev.mounter.Mounted(); return ok }
		}
		into[s.Lockdown] = ls
	}
}

// DeveloperMode reports whether Developer Mode is on.
func (d *Device) DeveloperMode() bool { return d.dev.DeveloperMode() }

// SetDeveloperMode switches Developer Mode on or off directly, as a user
// in Settings would (tests).
func (d *Device) SetDeveloperMode(on bool) error {
	d.dev.mu.Lock()
	d.dev.mode = devModeOff
	if on {
		d.dev.mode = devModeOn
	}
	d.dev.mu.Unlock()
	return d.dev.save()
}

// SetPasscode sets or clears the simulated passcode.
func (d *Device) SetPasscode(on bool) {
	d.dev.mu.Lock()
	d.dev.passcode = on
	d.dev.mu.Unlock()
}

// MountedDDI returns the SHA-384 of the mounted developer disk image.
func (d *Device) MountedDDI() ([]byte, bool) {
	img, ok := d.dev.mounter.Mounted()
	return img.Digest, ok
}

// SeedManifest keeps a manifest for the DDI at dir as if it had been
// mounted before (a no-op when the DDI lacks the device's identity).
func (d *Device) SeedManifest(dir string) error { return d.dev.seed(dir) }

// Signing is what a TSS stand-in needs to sign for this device now.
func (d *Device) Signing() tss.KnownDevice { return d.dev.signing() }
