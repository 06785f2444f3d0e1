package instproxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/iosmux/iosmux/internal/ipa"
	"github.com/iosmux/iosmux/services/reach"
)

// Stager puts a package where installation_proxy can read it: in the AFC
// root (an afc.Client does this).
type Stager interface {
	Mkdir(ctx context.Context, path string) error
	WriteFile(ctx context.Context, path string, r io.Reader, progress func(n int64)) (int64, error)
	Remove(ctx context.Context, path string) error
}

// StagingDir is where packages are staged in the AFC root (every
// reference uses PublicStaging).
const StagingDir = "PublicStaging"

// Step is an InstallLocal stage, for progress.
type Step int

const (
	StepUpload  Step = iota // copying the package to the device
	StepInstall             // the device installs it
	StepDone
)

// InstallProgress is InstallLocal's progress.
type InstallProgress struct {
	Step Step
	// Upload: bytes sent of Total.
	Bytes, Total int64
	// Install: the device's stage and percent.
	Progress
}

// Installed describes what InstallLocal installed.
type Installed struct {
	BundleID, Version, ShortVersion, Name string
}

// InstallLocal installs a local .ipa, or a .app folder (packed as a .ipa
// on the fly), the way pymobiledevice3 does: stage it under PublicStaging
// through stage, Upgrade (install or replace) from there, remove the
// staged copy. The bundle id is read from the package first and sent as
// CFBundleIdentifier.
func InstallLocal(ctx context.Context, o reach.Opener, stage Stager, local string, opts InstallOptions, progress func(InstallProgress)) (Installed, error) {
	report := func(p InstallProgress) {
		if progress != nil {
			progress(p)
		}
	}
	fi, err := os.Stat(local)
	if err != nil {
		return Installed{}, fmt.Errorf("instproxy: %w", err)
	}
	var (
		info ipa.Info
		src  io.Reader
		size int64
	)
	if fi.IsDir() {
		root, err := os.OpenRoot(local)
		if err != nil {
			return Installed{}, fmt.Errorf("instproxy: %w", err)
		}
		info, err = ipa.InspectDir(root)
		root.Close()
		if err != nil {
			return Installed{}, fmt.Errorf("instproxy: %s: %w", local, err)
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(ipa.WriteApp(pw, local)) }()
		defer pr.Close()
		src = pr
		if opts.PackageType == "" {
			opts.PackageType = PackageDeveloper
		}
	} else {
		f, err := os.Open(local)
		if err != nil {
			return Installed{}, fmt.Errorf("instproxy: %w", err)
		}
		defer f.Close()
		if info, err = ipa.Inspect(f, fi.Size()); err != nil {
			return Installed{}, fmt.Errorf("instproxy: %s: %w", local, err)
		}
		src, size = f, fi.Size()
	}
	if opts.BundleID == "" {
		opts.BundleID = info.BundleID
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	remote := StagingDir + "/iosmux-" + hex.EncodeToString(rnd[:]) + ".ipa"
	if err := stage.Mkdir(ctx, StagingDir); err != nil {
		return Installed{}, fmt.Errorf("%s: staging: %w", o.UDID(), err)
	}
	var sent int64
	report(InstallProgress{Step: StepUpload, Total: size})
	if _, err := stage.WriteFile(ctx, remote, src, func(n int64) {
		sent += n
		report(InstallProgress{Step: StepUpload, Bytes: sent, Total: size})
	}); err != nil {
		stage.Remove(context.WithoutCancel(ctx), remote)
		return Installed{}, fmt.Errorf("%s: uploading %s: %w", o.UDID(), local, err)
	}
	defer stage.Remove(context.WithoutCancel(ctx), remote)
	c, err := Open(ctx, o)
	if err != nil {
		return Installed{}, err
	}
	defer c.Close()
	err = c.Upgrade(ctx, remote, opts, func(p Progress) { report(InstallProgress{Step: StepInstall, Progress: p}) })
	if err != nil {
		var de *DeviceError
		if errors.As(err, &de) {
			return Installed{}, fmt.Errorf("%s: installing %s: %w", o.UDID(), info.BundleID, err)
		}
		return Installed{}, fmt.Errorf("%s: %w", o.UDID(), err)
	}
	report(InstallProgress{Step: StepDone})
	return Installed{BundleID: info.BundleID, Version: info.Version, ShortVersion: info.ShortVersion, Name: info.Name}, nil
}

// Uninstall removes an app through o.
func Uninstall(ctx context.Context, o reach.Opener, bundleID string, progress func(Progress)) error {
	c, err := Open(ctx, o)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Uninstall(ctx, bundleID, progress); err != nil {
		return fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return nil
}
