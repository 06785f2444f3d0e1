package mounter

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/services/mounter/ddi"
	"github.com/iosmux/iosmux/services/mounter/tss"
	"github.com/iosmux/iosmux/services/reach"
)

// Open connects a client to the mounter of o.
func Open(ctx context.Context, o reach.Opener) (*Client, error) {
	conn, err := o.Open(ctx, reach.Mounter)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

// with runs f on a fresh connection, closing it after.
func with[T any](ctx context.Context, o reach.Opener, f func(*Client) (T, error)) (T, error) {
	c, err := Open(ctx, o)
	if err != nil {
		var zero T
		return zero, err
	}
	defer c.Close()
	v, err := f(c)
	if err != nil {
		return v, fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return v, nil
}

// Status is what List reports.
type Status struct {
	// Signatures are LookupImage's for Personalized images.
	Signatures [][]byte `json:"signatures"`
	// Entries are CopyDevices' (nil when the device does not support it).
	Entries []Entry `json:"entries"`
}

// Mounted reports whether a personalized DDI is mounted: LookupImage lists
// one, or (iOS 27, whose LookupImage stays empty) CopyDevices does.
func (s Status) Mounted() bool {
	if len(s.Signatures) > 0 {
		return true
	}
	return slices.ContainsFunc(s.Entries, func(e Entry) bool { return e.DiskImageType == imageTypePers && e.IsMounted })
}

// List asks both LookupImage and CopyDevices (pmd3 does both: neither
// alone is right on every iOS).
func List(ctx context.Context, o reach.Opener) (Status, error) {
	return with(ctx, o, func(c *Client) (Status, error) { return list(ctx, c) })
}

func list(ctx context.Context, c *Client) (Status, error) {
	var st Status
	var err error
	if st.Signatures, err = c.LookupImage(ctx, imageTypePers); err != nil {
		return st, err
	}
	if st.Entries, err = c.CopyDevices(ctx); err != nil && !errors.Is(err, ErrUnknownCommand) {
		return st, err
	}
	return st, nil
}

// DeveloperModeStatus reads QueryDeveloperModeStatus (go-ios's source).
func DeveloperModeStatus(ctx context.Context, o reach.Opener) (bool, error) {
	return with(ctx, o, func(c *Client) (bool, error) { return c.DeveloperModeStatus(ctx) })
}

// QueryIdentifiers reads the personalization identifiers.
func QueryIdentifiers(ctx context.Context, o reach.Opener) (Identifiers, error) {
	return with(ctx, o, func(c *Client) (Identifiers, error) { return c.Identifiers(ctx) })
}

// QueryNonce reads the personalization nonce.
func QueryNonce(ctx context.Context, o reach.Opener) ([]byte, error) {
	return with(ctx, o, func(c *Client) ([]byte, error) { return c.Nonce(ctx) })
}

// Unmount unmounts the DDI. ErrNotMounted when none is.
func Unmount(ctx context.Context, o reach.Opener) error {
	_, err := with(ctx, o, func(c *Client) (struct{}, error) { return struct{}{}, c.Unmount(ctx, mountPathDeveloper) })
	return err
}

// Step is a stage of Mount, for progress reports.
type Step int

const (
	StepCheck       Step = iota // Developer Mode and what is mounted
	StepIdentity                // identifiers and the build identity
	StepManifest                // asking the device for a manifest it keeps
	StepPersonalize             // nonce and TSS
	StepUpload                  // sending the image
	StepMount                   // MountImage
	StepServices                // reading the RSD for the new services
)

func (s Step) String() string {
	return [...]string{"checking the device", "choosing the build identity", "looking for a manifest on the device",
		"personalizing with TSS", "uploading the image", "mounting", "listing the new services"}[s]
}

// Progress is one progress report: a step, and for StepUpload bytes done
// of total.
type Progress struct {
	Step        Step
	Done, Total int64
}

// MountConfig configures Mount.
type MountConfig struct {
	// Bundle is the DDI; required.
	Bundle *ddi.Bundle
	// TSS signs when the device keeps no manifest; nil means Apple's
	// server (tss.DefaultURL).
	TSS *tss.Client
	// ECID is used when the identifiers lack UniqueChipID.
	ECID uint64
	// Progress, if set, is told of every step and upload chunk.
	Progress func(Progress)
}

// Personalization says where the manifest came from.
type Personalization string

const (
	FromDevice Personalization = "device" // the device kept one (offline branch)
	FromTSS    Personalization = "tss"    // signed now
)

// MountResult describes a Mount.
type MountResult struct {
	UDID           string          `json:"udid"`
	AlreadyMounted bool            `json:"alreadyMounted"`
	Manifest       Personalization `json:"manifest,omitempty"`
	BoardID        uint64          `json:"boardId,omitempty"`
	ChipID         uint64          `json:"chipId,omitempty"`
	Image          string          `json:"image,omitempty"`
	ImageDigest    []byte          `json:"imageDigest,omitempty"`
	Bytes          int64           `json:"bytes,omitempty"`
	Upload         time.Duration   `json:"uploadNanos,omitempty"`
	Took           time.Duration   `json:"tookNanos"`
	// Services are the RSD services that appeared with the mount (when o
	// re-reads an RSD).
	Services []string `json:"services,omitempty"`
}

// refresher is an opener that can read a fresh RSD Handshake.
type refresher interface {
	Refresh(ctx context.Context) (*rsd.Handshake, error)
	Handshake() *rsd.Handshake
}

// Mount mounts the personalized DDI (services.md §3.2): refuses
// early when Developer Mode is off (ErrDeveloperModeOff), does nothing
// when one is mounted, picks the DDI's build identity for the device's
// BoardId/ChipID (a *ddi.NoIdentityError names the missing one), takes the
// manifest the device keeps for the image or else personalizes it with TSS
// (errors.Is tss.ErrRefused carries Apple's message), uploads and mounts.
// With an RSD opener it then reads a fresh Handshake and reports the
// services that appeared.
func Mount(ctx context.Context, o reach.Opener, cfg MountConfig) (*MountResult, error) {
	start := time.Now()
	res := &MountResult{UDID: o.UDID()}
	step := func(s Step, done, total int64) {
		if cfg.Progress != nil {
			cfg.Progress(Progress{Step: s, Done: done, Total: total})
		}
	}
	if cfg.Bundle == nil {
		return nil, errors.New("mounter: no developer disk image given")
	}
	wrap := func(err error) error { return fmt.Errorf("%s: %w", res.UDID, err) }

	step(StepCheck, 0, 0)
	c, err := Open(ctx, o)
	if err != nil {
		return nil, err
	}
	defer func() { c.Close() }()
	on, err := c.DeveloperModeStatus(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	if !on {
		return nil, wrap(fmt.Errorf("%w: turn it on first (iosmux amfi enable)", ErrDeveloperModeOff))
	}
	st, err := list(ctx, c)
	if err != nil {
		return nil, wrap(err)
	}
	var before []string
	rf, hasRSD := o.(refresher)
	if hasRSD {
		before = names(rf.Handshake())
	}
	if st.Mounted() {
		res.AlreadyMounted = true
		res.Took = time.Since(start)
		return res, nil
	}

	step(StepIdentity, 0, 0)
	ids, err := c.Identifiers(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	res.BoardID, res.ChipID = ids.BoardID, ids.ChipID
	id, err := cfg.Bundle.Manifest.Select(ids.BoardID, ids.ChipID)
	if err != nil {
		return nil, wrap(fmt.Errorf("%w (DDI at %s)", err, cfg.Bundle.Dir))
	}
	files, err := cfg.Bundle.Files(id)
	if err != nil {
		return nil, wrap(err)
	}
	res.Image = files.Image
	// The manifest's digest names the image to the device (no need to
	// read 256 MiB before the first request); the upload hashes what it
	// sends and nothing is mounted unless the two agree.
	digest, ok := id.Digest(ddi.ComponentImage)
	if !ok || len(digest) != sha512.Size384 {
		if digest, err = ddi.Digest(files.Image); err != nil {
			return nil, wrap(err)
		}
	}
	res.ImageDigest = digest
	trustCache, err := os.ReadFile(files.TrustCache)
	if err != nil {
		return nil, wrap(fmt.Errorf("mounter: %w", err))
	}

	step(StepManifest, 0, 0)
	manifest, err := c.Manifest(ctx, digest)
	res.Manifest = FromDevice
	if err != nil {
		if !errors.Is(err, ErrNoManifest) {
			return nil, wrap(err)
		}
		// The device closed the connection after refusing.
		c.Close()
		if c, err = Open(ctx, o); err != nil {
			return nil, err
		}
		step(StepPersonalize, 0, 0)
		if manifest, err = personalize(ctx, c, ids, id, cfg); err != nil {
			return nil, wrap(err)
		}
		res.Manifest = FromTSS
	}

	f, err := os.Open(files.Image)
	if err != nil {
		return nil, wrap(fmt.Errorf("mounter: %w", err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, wrap(fmt.Errorf("mounter: %w", err))
	}
	res.Bytes = fi.Size()
	step(StepUpload, 0, res.Bytes)
	up := time.Now()
	h := sha512.New384()
	err = c.Upload(ctx, imageTypePers, manifest, io.TeeReader(f, h), res.Bytes, func(done int64) { step(StepUpload, done, res.Bytes) })
	if err != nil {
		return nil, wrap(err)
	}
	res.Upload = time.Since(up)
	if !bytes.Equal(h.Sum(nil), digest) {
		return nil, wrap(fmt.Errorf("mounter: %s does not match the digest in its BuildManifest.plist (altered or from another DDI); not mounting it", files.Image))
	}

	step(StepMount, 0, 0)
	if err := c.Mount(ctx, manifest, trustCache, nil); err != nil {
		if errors.Is(err, ErrAlreadyMounted) {
			res.AlreadyMounted = true
		} else {
			return nil, wrap(err)
		}
	}
	c.Hangup(ctx)

	if hasRSD {
		step(StepServices, 0, 0)
		h, err := rf.Refresh(ctx)
		if err != nil {
			return nil, wrap(fmt.Errorf("mounted, but reading the RSD again failed: %w", err))
		}
		for _, n := range names(h) {
			if !slices.Contains(before, n) {
				res.Services = append(res.Services, n)
			}
		}
	}
	res.Took = time.Since(start)
	return res, nil
}

// personalize asks TSS for a manifest for the device's current nonce.
func personalize(ctx context.Context, c *Client, ids Identifiers, id *ddi.Identity, cfg MountConfig) ([]byte, error) {
	nonce, err := c.Nonce(ctx)
	if err != nil {
		return nil, err
	}
	ecid := ids.ECID
	if ecid == 0 {
		ecid = cfg.ECID
	}
	if ecid == 0 {
		return nil, errors.New("mounter: the device's ECID is unknown (no UniqueChipID in its identifiers)")
	}
	req, err := tss.NewRequest(tss.Params{ECID: ecid, BoardID: ids.BoardID, ChipID: ids.ChipID,
		SecurityDomain: ids.SecurityDomain, Nonce: nonce, Identifiers: ids.All, Manifest: id.Manifest})
	if err != nil {
		return nil, err
	}
	client := cfg.TSS
	if client == nil {
		client = &tss.Client{}
	}
	return client.Ticket(ctx, req)
}

func names(h *rsd.Handshake) []string {
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h.Services))
	for _, s := range h.Services {
		out = append(out, s.Name)
	}
	return out
}
