package zipconduit

import (
	"bufio"
	"compress/flate"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
	"github.com/iosmux/iosmux/internal/ipa"
	"github.com/iosmux/iosmux/lockdown"
)

// ServerConfig configures the device role.
type ServerConfig struct {
	// NewStaging makes a fresh folder to unpack into.
	NewStaging func() (string, error)
	// Install installs the unpacked package (Payload/<x>.app) in dir,
	// reporting its stages, and consumes dir. An error with methods
	// DeviceErrorName and DeviceErrorDescription (instproxy's) is sent
	// under its name; others as an internal error.
	Install func(ctx context.Context, dir string, progress func(percent int, status string)) error
	// Limits bound the stream as unpacking a .ipa is bounded.
	Limits ipa.Limits
	// Timeout bounds each read of the stream, once begun, and each
	// reply; 0 means lockdown.DefaultTimeout.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Server is the device role.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
}

// NewServer checks the configuration.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.NewStaging == nil || cfg.Install == nil {
		return nil, errors.New("zipconduit: server needs NewStaging and Install")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = lockdown.DefaultTimeout
	}
	if cfg.Limits.MaxEntries <= 0 {
		cfg.Limits.MaxEntries = ipa.DefaultMaxEntries
	}
	if cfg.Limits.MaxTotal <= 0 {
		cfg.Limits.MaxTotal = ipa.DefaultMaxTotal
	}
	if cfg.Limits.MaxFile <= 0 {
		cfg.Limits.MaxFile = ipa.DefaultMaxFile
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}, nil
}

// extractionFailed is the top-level error for a stream the device cannot
// unpack (appium saw ExtractionFailed there).
const extractionFailed = "ExtractionFailed"

// Serve runs one transfer: InitTransfer, the stream unpacked as it comes
// into a staging folder, then the install with progress, and
// {Status: DataComplete} (docs/protocols/zipconduit.md §4–§5).
func (s *Server) Serve(ctx context.Context, conn net.Conn) {
	pc := lockdown.NewPlistConn(conn, 1<<20)
	send := func(m map[string]any) {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
		defer cancel()
		pc.Send(wctx, m)
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	req, err := pc.ReceiveMessage(rctx)
	cancel()
	if err != nil {
		return
	}
	if sub, ok := req.String("MediaSubdir"); !ok || sub == "" {
		send(map[string]any{"Error": "InvalidRequest", "ErrorDescription": "InitTransfer without MediaSubdir"})
		return
	}
	dir, err := s.cfg.NewStaging()
	if err != nil {
		send(map[string]any{"Error": "InternalError", "ErrorDescription": err.Error()})
		return
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		os.RemoveAll(dir)
		send(map[string]any{"Error": "InternalError", "ErrorDescription": err.Error()})
		return
	}
	stop := deadline.Interrupt(ctx, conn.SetDeadline)
	err = s.unpack(ctx, conn, root)
	stop()
	root.Close()
	if err != nil {
		os.RemoveAll(dir)
		s.log.Debug("zipconduit: stream refused", "err", err)
		send(map[string]any{"Error": extractionFailed, "ErrorDescription": err.Error()})
		return
	}
	err = s.cfg.Install(ctx, dir, func(pct int, status string) {
		send(map[string]any{"InstallProgressDict": map[string]any{"PercentComplete": pct, "Status": status}})
	})
	if err != nil {
		name, desc := "InternalError", err.Error()
		var de interface {
			DeviceErrorName() string
			DeviceErrorDescription() string
		}
		if errors.As(err, &de) {
			name, desc = de.DeviceErrorName(), de.DeviceErrorDescription()
		}
		send(map[string]any{"InstallProgressDict": map[string]any{"Error": name, "ErrorDescription": desc}})
		return
	}
	send(map[string]any{"Status": StatusDataComplete})
}

// unpack reads entries until the end marker, writing each into root as it
// arrives. Names are checked (ipa.CleanName) and written through the
// os.Root; counts and sizes are bounded; each file's CRC is checked.
func (s *Server) unpack(ctx context.Context, conn net.Conn, root *os.Root) error {
	br := bufio.NewReaderSize(&deadlineReader{ctx: ctx, c: conn, timeout: s.cfg.Timeout}, 1<<20)
	var hdr [localHeaderLen]byte
	var total int64
	buf := make([]byte, 1<<20)
	for entries := 0; ; entries++ {
		if entries > s.cfg.Limits.MaxEntries {
			return fmt.Errorf("more than %d entries", s.cfg.Limits.MaxEntries)
		}
		if _, err := io.ReadFull(br, hdr[:4]); err != nil {
			return fmt.Errorf("reading an entry header: %w", err)
		}
		if string(hdr[:4]) == string(centralDirMarker) {
			return nil
		}
		if _, err := io.ReadFull(br, hdr[4:]); err != nil {
			return fmt.Errorf("reading an entry header: %w", err)
		}
		h, err := ParseEntryHeader(hdr[:])
		if err != nil {
			return err
		}
		nameb := make([]byte, h.NameLen)
		if _, err := io.ReadFull(br, nameb); err != nil {
			return err
		}
		if _, err := br.Discard(int(h.ExtraLen)); err != nil {
			return err
		}
		name, err := ipa.CleanName(string(nameb))
		if err != nil {
			return err
		}
		if strings.HasSuffix(name, "/") {
			if h.CompressedSize != 0 {
				return fmt.Errorf("%w: folder %s with %d bytes", errBadHeader, name, h.CompressedSize)
			}
			if err := root.MkdirAll(strings.TrimSuffix(name, "/"), 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		if int64(h.Size) > s.cfg.Limits.MaxFile || total+int64(h.Size) > s.cfg.Limits.MaxTotal {
			return fmt.Errorf("%s: %d bytes: past the size limits", name, h.Size)
		}
		total += int64(h.Size)
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		if err := s.writeEntry(br, root, name, h, buf); err != nil {
			return err
		}
	}
}

func (s *Server) writeEntry(br *bufio.Reader, root *os.Root, name string, h EntryHeader, buf []byte) error {
	out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	raw := io.LimitReader(br, int64(h.CompressedSize))
	var src io.Reader = raw
	if h.Method == methodDeflate {
		fr := flate.NewReader(raw)
		defer fr.Close()
		src = io.LimitReader(fr, int64(h.Size)+1)
	}
	crc := crc32.NewIEEE()
	n, err := io.CopyBuffer(io.MultiWriter(out, crc), src, buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if h.Method == methodDeflate {
		// The rest of the compressed bytes, if the stream ended early.
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if n != int64(h.Size) {
		return fmt.Errorf("%s: %d bytes, the header says %d", name, n, h.Size)
	}
	if crc.Sum32() != h.CRC {
		return fmt.Errorf("%s: CRC %08x, the header says %08x", name, crc.Sum32(), h.CRC)
	}
	return nil
}

// deadlineReader gives every read of the stream its own deadline.
type deadlineReader struct {
	ctx     context.Context
	c       net.Conn
	timeout time.Duration
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	r.c.SetReadDeadline(time.Now().Add(r.timeout))
	return r.c.Read(p)
}
