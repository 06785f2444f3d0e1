package lockdown

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/iosmux/iosmux/usbmux"
)

// Classic pairing of a device attached through usbmuxd, in the three
// forms idevicepair offers (pair, unpair, validate) and the "pair when
// needed" step every command that opens a lockdown session takes first
// (pymobiledevice3's autopair, go-ios's tunnel start): EnsurePaired.

// PairOptions configures PairUsbmux and EnsurePaired.
type PairOptions struct {
	// HostName is shown on the device; empty means "iosmux".
	HostName string
	// OnPrompt is called once when the device shows its Trust dialog
	// (PairConfig.OnPrompt): tell the user to tap Trust.
	OnPrompt func()
	// PollInterval is PairConfig.PollInterval.
	PollInterval time.Duration
	// NoAutopair makes EnsurePaired fail with ErrNotPaired instead of
	// pairing (--no-autopair).
	NoAutopair bool
	// Store, if set, is a second home for records besides usbmuxd (the
	// pair record folder pymobiledevice3 also writes): EnsurePaired gives
	// its record to usbmuxd when usbmuxd has none, and a new pairing is
	// saved there too. A record Store cannot read is treated as absent (a
	// new pairing replaces it).
	Store RecordStore
}

// RecordStore keeps classic pair records by UDID.
type RecordStore interface {
	// LoadRecord returns udid's record; an error (fs.ErrNotExist when
	// there is none) means there is no usable one.
	LoadRecord(udid string) (*PairRecord, error)
	// SaveRecord stores udid's record.
	SaveRecord(udid string, rec *PairRecord) error
}

// PairError is a classic pairing of one device that did not happen. Err
// is the cause: errors.Is finds ErrUserDeniedPairing (Don't Trust),
// ErrPasswordProtected (locked with a passcode), ErrTrustTimeout (nobody
// answered) and ErrNotPaired (pairing not allowed); the message says
// what the user should do.
type PairError struct {
	UDID string
	Err  error
}

func (e *PairError) Error() string {
	switch {
	case errors.Is(e.Err, ErrUserDeniedPairing):
		return fmt.Sprintf("lockdown: device %s: the user refused to pair (Don't Trust was tapped on the iPhone): run the command again and tap Trust; unplug and replug the iPhone if the dialog does not come back", e.UDID)
	case errors.Is(e.Err, ErrPasswordProtected):
		return fmt.Sprintf("lockdown: device %s is locked with a passcode, so it cannot show the Trust dialog: unlock it, then run the command again and tap Trust", e.UDID)
	case errors.Is(e.Err, ErrTrustTimeout):
		return fmt.Sprintf("lockdown: device %s: nobody answered the Trust dialog on the iPhone in time (%v): run the command again and tap Trust", e.UDID, e.Err)
	case errors.Is(e.Err, ErrNotPaired):
		return fmt.Sprintf("lockdown: device %s: %v: pair it with 'iosmux lockdown pair --udid %s' (tap Trust on the iPhone), or leave out --no-autopair", e.UDID, e.Err, e.UDID)
	}
	return fmt.Sprintf("lockdown: device %s: pair: %v", e.UDID, e.Err)
}

func (e *PairError) Unwrap() error { return e.Err }

// PairUsbmux runs the classic Pair with a device attached through usbmuxd
// (the host's SystemBUID from usbmuxd; the device shows its Trust dialog)
// and stores the new record in usbmuxd, as pmd3 and libimobiledevice do,
// and in opt.Store when set. The outcomes a user causes come back as a
// *PairError.
func PairUsbmux(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, opt PairOptions) (*PairRecord, error) {
	udid := dev.UDID()
	buid, err := mux.ReadBUID(ctx)
	if err != nil {
		return nil, fmt.Errorf("lockdown: device %s: pair: %w", udid, err)
	}
	lc, err := DialUsbmux(ctx, mux, dev.DeviceID, ClientConfig{})
	if err != nil {
		return nil, fmt.Errorf("lockdown: device %s: pair: %w", udid, err)
	}
	defer lc.Close()
	rec, err := lc.Pair(ctx, PairConfig{SystemBUID: buid, HostName: opt.HostName, PollInterval: opt.PollInterval, OnPrompt: opt.OnPrompt})
	if err != nil {
		return nil, &PairError{UDID: udid, Err: err}
	}
	if rec.UDID == "" {
		rec.UDID = udid
	}
	if err := SavePairRecord(ctx, mux, udid, dev.DeviceID, rec); err != nil {
		return nil, fmt.Errorf("lockdown: device %s: paired, but saving the pair record in usbmuxd failed: %w", udid, err)
	}
	if opt.Store != nil {
		if err := opt.Store.SaveRecord(udid, rec); err != nil {
			// usbmuxd holds it: the next EnsurePaired finds it there.
			return nil, fmt.Errorf("lockdown: device %s: paired (usbmuxd keeps the record), but saving it in the record folder failed: %w", udid, err)
		}
	}
	return rec, nil
}

// EnsurePaired returns a pair record for dev that the device accepts,
// pairing first when there is none: pymobiledevice3's autopair. The
// record usbmuxd holds (or opt.Store's, given to usbmuxd when usbmuxd has
// none) is checked with a lockdown session (what pymobiledevice3's
// validate_pairing and idevicepair validate do); when there is no record,
// or the device no longer trusts it, PairUsbmux runs (the Trust dialog),
// unless opt.NoAutopair, which makes it a *PairError with ErrNotPaired.
// paired reports whether a new pairing was made.
func EnsurePaired(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, opt PairOptions) (rec *PairRecord, paired bool, err error) {
	udid := dev.UDID()
	rec, err = ReadPairRecord(ctx, mux, udid)
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		rec, err = nil, nil
		if opt.Store != nil {
			if r, lerr := opt.Store.LoadRecord(udid); lerr == nil {
				if err := SavePairRecord(ctx, mux, udid, dev.DeviceID, r); err != nil {
					return nil, false, fmt.Errorf("lockdown: device %s: giving the stored pair record to usbmuxd: %w", udid, err)
				}
				rec = r
			}
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("lockdown: device %s: read pair record: %w", udid, err)
	}
	why := "no pair record in usbmuxd"
	if rec != nil {
		err := checkRecord(ctx, mux, dev, rec)
		if err == nil {
			return rec, false, nil
		}
		if !errors.Is(err, ErrInvalidHostID) {
			return nil, false, fmt.Errorf("lockdown: device %s: check the pair record: %w", udid, err)
		}
		why = "the device no longer trusts this host's pair record"
	}
	if opt.NoAutopair {
		return nil, false, &PairError{UDID: udid, Err: fmt.Errorf("%w (%s)", ErrNotPaired, why)}
	}
	rec, err = PairUsbmux(ctx, mux, dev, opt)
	if err != nil {
		return nil, false, err
	}
	return rec, true, nil
}

// checkRecord opens a lockdown session with rec: it fails with
// ErrInvalidHostID when the device does not know the pairing.
func checkRecord(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry, rec *PairRecord) error {
	lc, err := DialUsbmux(ctx, mux, dev.DeviceID, ClientConfig{})
	if err != nil {
		return err
	}
	defer lc.Close()
	_, err = lc.StartSession(ctx, rec)
	return err
}

// ValidateUsbmux checks that the device accepts the pair record usbmuxd
// holds for it by opening a session with it (idevicepair validate) and
// returns the record. No record, or one the device no longer trusts, is a
// *PairError with ErrNotPaired.
func ValidateUsbmux(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry) (*PairRecord, error) {
	udid := dev.UDID()
	rec, err := ReadPairRecord(ctx, mux, udid)
	if errors.Is(err, usbmux.ErrNoPairRecord) {
		return nil, &PairError{UDID: udid, Err: fmt.Errorf("%w (no pair record in usbmuxd)", ErrNotPaired)}
	}
	if err != nil {
		return nil, fmt.Errorf("lockdown: device %s: read pair record: %w", udid, err)
	}
	err = checkRecord(ctx, mux, dev, rec)
	if errors.Is(err, ErrInvalidHostID) {
		return nil, &PairError{UDID: udid, Err: fmt.Errorf("%w (the device no longer trusts this host's pair record)", ErrNotPaired)}
	}
	if err != nil {
		return nil, fmt.Errorf("lockdown: device %s: validate: %w", udid, err)
	}
	return rec, nil
}

// UnpairUsbmux makes the device forget this host's pairing (Unpair with
// the record usbmuxd holds) and deletes usbmuxd's record (idevicepair
// unpair). A device that had already forgotten it (InvalidHostID) is not
// an error: the record is deleted all the same. It returns
// usbmux.ErrNoPairRecord, wrapped, when there is nothing to unpair.
func UnpairUsbmux(ctx context.Context, mux *usbmux.Client, dev usbmux.DeviceEntry) error {
	udid := dev.UDID()
	rec, err := ReadPairRecord(ctx, mux, udid)
	if err != nil {
		return fmt.Errorf("lockdown: device %s: unpair: %w", udid, err)
	}
	lc, err := DialUsbmux(ctx, mux, dev.DeviceID, ClientConfig{})
	if err != nil {
		return fmt.Errorf("lockdown: device %s: unpair: %w", udid, err)
	}
	defer lc.Close()
	if err := lc.Unpair(ctx, rec); err != nil && !errors.Is(err, ErrInvalidHostID) {
		return fmt.Errorf("lockdown: device %s: %w", udid, err)
	}
	if err := mux.DeletePairRecord(ctx, udid); err != nil {
		return fmt.Errorf("lockdown: device %s: the device forgot this host, but deleting usbmuxd's pair record failed: %w", udid, err)
	}
	return nil
}

// UsbmuxServices starts lockdown services on a device attached through
// usbmuxd with a known pair record: each StartService opens a fresh
// lockdown session, starts the service, connects to its port and runs its
// TLS when asked (the connection outlives the lockdown one, as in
// pymobiledevice3). It is pairing.ServiceStarter for the RemotePairing
// lockdown transport, whose service the device closes after pair-setup.
type UsbmuxServices struct {
	Mux    *usbmux.Client
	Device usbmux.DeviceEntry
	Record *PairRecord
	Config ClientConfig
}

// StartService opens the named service.
func (s *UsbmuxServices) StartService(ctx context.Context, name string) (io.ReadWriteCloser, error) {
	conn, _, err := openService(ctx, s.Mux, s.Device, s.Record, name, s.Config)
	return conn, err
}
