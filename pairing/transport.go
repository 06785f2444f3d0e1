package pairing

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/iosmux/iosmux/internal/deadline"
)

// Transport carries whole envelopes (remotepairing.md §1.1) as trees (see
// tree.go), one per call. Implementations: RPPairing framing over a stream
// (network pairing and the lockdown service, remotepairing.md §1.3–§1.4)
// and the RemoteXPC tunnel service (§1.2). Like idevice's RpPairingSocketProvider, the
// handshake code knows nothing else about the carrier.
//
// One goroutine may read while another writes. ReadEnvelope and
// WriteEnvelope return when ctx is done. Close unblocks both and may be
// called more than once.
type Transport interface {
	WriteEnvelope(ctx context.Context, env map[string]any) error
	ReadEnvelope(ctx context.Context) (map[string]any, error)
	Close() error
}

// deadliner is the part of net.Conn that lets a context interrupt I/O.
type deadliner interface {
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// ioWithContext runs one blocking read or write on conn bounded by ctx, the
// way crypto/tls HandshakeContext does: the context's deadline becomes the
// conn's, and cancellation moves the deadline into the past. Without
// deadlines, cancellation closes the conn if it can be closed.
func ioWithContext(ctx context.Context, conn any, read bool, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	set := func(time.Time) error { return nil }
	if d, ok := conn.(deadliner); ok {
		set = d.SetWriteDeadline
		if read {
			set = d.SetReadDeadline
		}
		dl, _ := ctx.Deadline()
		_ = set(dl)
		defer func() { _ = set(time.Time{}) }()
	}
	var stop func() bool
	if _, ok := conn.(deadliner); ok {
		stop = deadline.Interrupt(ctx, set)
	} else {
		stop = context.AfterFunc(ctx, func() {
			if c, ok := conn.(io.Closer); ok {
				_ = c.Close()
			}
		})
	}
	err := fn()
	if !stop() || ctx.Err() != nil {
		if cause := context.Cause(ctx); cause != nil {
			return fmt.Errorf("%w (%w)", cause, err)
		}
	}
	return err
}
