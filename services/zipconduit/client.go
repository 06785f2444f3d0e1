package zipconduit

import (
	"archive/zip"
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/internal/ipa"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/reach"
	"howett.net/plist"
)

// Step is a stage of Send, for progress.
type Step int

const (
	StepStream  Step = iota // sending the package
	StepInstall             // the device installs
	StepDone
)

// SendProgress is Send's progress.
type SendProgress struct {
	Step         Step
	Bytes, Total int64 // StepStream: payload bytes sent of the package's total
	Progress           // StepInstall: the device's message
}

// SendConfig configures Send.
type SendConfig struct {
	// Progress, if set, is told of every chunk sent and every device
	// message.
	Progress func(SendProgress)
	// WriteTimeout bounds each write and ReplyTimeout each progress
	// message; 0 means 1 and 5 minutes.
	WriteTimeout, ReplyTimeout time.Duration
}

// Installed names what Send installed.
type Installed struct {
	BundleID, Version, ShortVersion, Name string
}

// Install opens the zip conduit through o and sends the .ipa at path.
func Install(ctx context.Context, o reach.Opener, path string, cfg SendConfig) (Installed, error) {
	conn, err := o.Open(ctx, reach.ZipConduit)
	if err != nil {
		return Installed{}, err
	}
	defer conn.Close()
	in, err := Send(ctx, conn, path, cfg)
	if err != nil {
		return in, fmt.Errorf("%s: %w", o.UDID(), err)
	}
	return in, nil
}

// Send streams the .ipa at path over conn (positioned at the service's
// first byte) and waits for the device to install it. Each entry is sent
// stored, decompressed on the fly; an entry of 4 GiB or more cannot be
// described by the stream's 32-bit sizes and is refused before anything
// is sent.
func Send(ctx context.Context, conn net.Conn, path string, cfg SendConfig) (Installed, error) {
	report := func(p SendProgress) {
		if cfg.Progress != nil {
			cfg.Progress(p)
		}
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = time.Minute
	}
	if cfg.ReplyTimeout <= 0 {
		cfg.ReplyTimeout = 5 * time.Minute
	}
	info, err := ipa.InspectFile(path)
	if err != nil {
		return Installed{}, fmt.Errorf("zipconduit: %s: %w", path, err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		return Installed{}, fmt.Errorf("zipconduit: %w", err)
	}
	defer zr.Close()
	var total uint64
	for _, f := range zr.File {
		if f.UncompressedSize64 >= 1<<32 {
			return Installed{}, fmt.Errorf("zipconduit: %s: %s is 4 GiB or more, which the stream cannot carry; install through installation_proxy", path, f.Name)
		}
		if _, err := ipa.CleanName(f.Name); err != nil {
			return Installed{}, fmt.Errorf("zipconduit: %s: %w", path, err)
		}
		total += f.UncompressedSize64
	}
	stop := deadline.Interrupt(ctx, conn.SetDeadline)
	defer stop()
	pc := lockdown.NewPlistConn(conn, 1<<20)
	if err := pc.Send(ctx, InitTransfer(filepath.Base(path))); err != nil {
		return Installed{}, fmt.Errorf("zipconduit: send InitTransfer: %w", err)
	}
	dw := &deadlineWriter{ctx: ctx, c: conn, timeout: cfg.WriteTimeout}
	bw := bufio.NewWriterSize(dw, 1<<20)
	meta, err := plist.Marshal(newMetadata(len(zr.File), total), plist.XMLFormat)
	if err != nil {
		return Installed{}, err
	}
	bw.Write(AppendEntryHeader(nil, "META-INF/", 0, 0))
	bw.Write(AppendEntryHeader(nil, MetadataName, crc32.ChecksumIEEE(meta), uint32(len(meta))))
	bw.Write(meta)
	var sent int64
	report(SendProgress{Step: StepStream, Total: int64(total)})
	buf := make([]byte, 1<<20)
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || strings.HasSuffix(f.Name, "/") {
			name := f.Name
			if !strings.HasSuffix(name, "/") {
				name += "/"
			}
			bw.Write(AppendEntryHeader(nil, name, 0, 0))
			continue
		}
		bw.Write(AppendEntryHeader(nil, f.Name, f.CRC32, uint32(f.UncompressedSize64)))
		rc, err := f.Open()
		if err != nil {
			return Installed{}, fmt.Errorf("zipconduit: %s: %w", f.Name, err)
		}
		n, err := io.CopyBuffer(bw, io.LimitReader(rc, int64(f.UncompressedSize64)), buf)
		rc.Close()
		if err == nil && n != int64(f.UncompressedSize64) {
			err = fmt.Errorf("%d of %d bytes", n, f.UncompressedSize64)
		}
		if err != nil {
			return Installed{}, fmt.Errorf("zipconduit: sending %s: %w", f.Name, err)
		}
		sent += n
		report(SendProgress{Step: StepStream, Bytes: sent, Total: int64(total)})
	}
	bw.Write(centralDirMarker)
	if err := bw.Flush(); err != nil {
		return Installed{}, fmt.Errorf("zipconduit: sending the package: %w", err)
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, cfg.ReplyTimeout)
		m, err := pc.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			return Installed{}, fmt.Errorf("zipconduit: waiting for the install: %w", err)
		}
		p, done, err := ParseProgress(m)
		if err != nil {
			return Installed{}, err
		}
		report(SendProgress{Step: StepInstall, Progress: p})
		if done {
			report(SendProgress{Step: StepDone})
			return Installed{BundleID: info.BundleID, Version: info.Version, ShortVersion: info.ShortVersion, Name: info.Name}, nil
		}
	}
}

// deadlineWriter gives every write its own deadline.
type deadlineWriter struct {
	ctx     context.Context
	c       net.Conn
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, context.Cause(w.ctx)
	}
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.c.Write(p)
}
