package pairing

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
)

// PairConfig configures Pair.
type PairConfig struct {
	Host ClientConfig
	// Dial opens a new connection to the device's pairing endpoint; Pair
	// dials twice when it pairs (remotepairing.md §4.9: reconnect, then verify).
	Dial func(ctx context.Context) (Transport, error)
	// Store holds the records.
	Store RecordStore
	// Identifier names the record. Empty means the handshake's
	// peerDeviceInfo.identifier (the UDID over RSD, remotepairing.md §8.1).
	Identifier string
}

// PairResult describes what Pair did.
type PairResult struct {
	// AlreadyPaired: an existing record verified; nothing was changed.
	AlreadyPaired bool
	// ID and Path name the record.
	ID, Path string
	Device   *HandshakeInfo
	// Peer is the device identity from M6 (nil when AlreadyPaired).
	Peer *PeerInfo
	// UnlockKeyErr is why remote_unlock_host_key was left empty, if it
	// was (tvOS refuses the request; remotepairing.md §6.4).
	UnlockKeyErr error
}

// Pair brings a device to a state where pair-verify succeeds, in one shot:
//
//  1. handshake; pair-verify with the stored record, or, with none, with
//     the all-zero key as pymobiledevice3 does, which the device rejects;
//  2. on rejection, pair-setup on the same connection (the user taps Trust
//     or the PIN is asked for), then createRemoteUnlockKey;
//  3. save the record (atomically, mode 0600);
//  4. reconnect and pair-verify with the new record.
//
// A valid record is reported as AlreadyPaired and left untouched. After the
// handshake, the result names the device even when an error is returned.
func Pair(ctx context.Context, cfg *PairConfig) (*PairResult, error) {
	hc := cfg.Host
	if hc.Identifier == "" {
		hc.Identifier = HostIdentifier(hc.HostName)
	}
	t, err := cfg.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("pairing: connect: %w", err)
	}
	h := NewClient(t, &hc)
	defer h.Close()
	info, err := h.Handshake(ctx)
	if err != nil {
		return nil, err
	}
	res := &PairResult{Device: info, ID: cfg.Identifier}
	if res.ID == "" {
		res.ID = info.Device.Identifier
	}
	if res.Path, err = cfg.Store.Path(res.ID); err != nil {
		return res, err
	}

	rec, err := cfg.Store.Load(res.ID)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	id := Identity{Identifier: hc.Identifier, PrivateKey: ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))}
	if rec != nil {
		id = rec.Identity(hc.Identifier)
	}
	err = h.Verify(ctx, id)
	if err == nil && rec != nil {
		res.AlreadyPaired = true
		return res, nil
	}
	if err != nil && !errors.Is(err, ErrAuthentication) {
		return res, err
	}

	setup, err := h.Setup(ctx)
	if err != nil {
		return res, err
	}
	res.Peer = setup.Peer
	key, err := h.CreateRemoteUnlockKey(ctx)
	if err != nil {
		// The pairing stands without the key; pymobiledevice3 stores "".
		res.UnlockKeyErr, key = err, ""
	}
	newRec := NewRecord(setup, key)
	if _, err := cfg.Store.Save(res.ID, newRec); err != nil {
		return res, stepErr(StepSaveRecord, err)
	}
	h.Close()

	t2, err := cfg.Dial(ctx)
	if err != nil {
		return res, fmt.Errorf("pairing: paired and saved %s, but reconnecting failed: %w", res.Path, err)
	}
	h2 := NewClient(t2, &hc)
	defer h2.Close()
	if _, err := h2.Handshake(ctx); err != nil {
		return res, fmt.Errorf("pairing: paired and saved %s, but the check after reconnecting failed: %w", res.Path, err)
	}
	if err := h2.Verify(ctx, newRec.Identity(hc.Identifier)); err != nil {
		return res, fmt.Errorf("pairing: paired and saved %s, but pair-verify with it failed: %w", res.Path, err)
	}
	return res, nil
}
