package pairing

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// RPPairing framing (remotepairing.md §1.3): the network
// pairing transport and, unchanged, the lockdown service transport
// (remotepairing.md §1.4).
//
//	offset 0   9 bytes  ASCII "RPPairing"
//	offset 9   u16 BE   L, the length of the body
//	offset 11  L bytes  UTF-8 JSON of the envelope; bytes as base64 strings

const (
	rpMagic     = "RPPairing"
	rpHeaderLen = len(rpMagic) + 2
	rpMaxBody   = 0xFFFF
)

// AppendFrame appends one RPPairing frame holding body.
func AppendFrame(b, body []byte) ([]byte, error) {
	if len(body) > rpMaxBody {
		return b, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(body))
	}
	b = append(b, rpMagic...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	return append(b, body...), nil
}

// parseFrameHeader checks the magic (only appium does among the references;
// iosmux does, remotepairing.md §1.3) and returns the body length.
func parseFrameHeader(h []byte) (int, error) {
	if len(h) < rpHeaderLen {
		return 0, malformed("RPPairing header of %d bytes", len(h))
	}
	if string(h[:len(rpMagic)]) != rpMagic {
		return 0, malformed("RPPairing magic %q", h[:len(rpMagic)])
	}
	return int(binary.BigEndian.Uint16(h[len(rpMagic):])), nil
}

// ParseFrame splits one frame off the front of b and returns its body and
// the bytes after it.
func ParseFrame(b []byte) (body, rest []byte, err error) {
	n, err := parseFrameHeader(b)
	if err != nil {
		return nil, nil, err
	}
	if len(b)-rpHeaderLen < n {
		return nil, nil, malformed("RPPairing body of %d bytes, %d present", n, len(b)-rpHeaderLen)
	}
	return b[rpHeaderLen : rpHeaderLen+n], b[rpHeaderLen+n:], nil
}

// encodeEnvelopeJSON writes an envelope tree as JSON; encoding/json turns
// []byte into standard base64 with padding, as
// remotepairing.md §1.3 wants.
func encodeEnvelopeJSON(env tree) ([]byte, error) {
	return json.Marshal(env)
}

// decodeEnvelopeJSON parses a frame body into a tree.
func decodeEnvelopeJSON(body []byte) (tree, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, malformed("RPPairing body is not JSON: %v", err)
	}
	if dec.More() {
		return nil, malformed("RPPairing body has data after the JSON value")
	}
	t, ok := normalizeJSON(v).(tree)
	if !ok {
		return nil, malformed("RPPairing body is %T, want an object", v)
	}
	return t, nil
}

// RPPairing is a Transport over a byte stream with RPPairing framing.
type RPPairing struct {
	rw        io.ReadWriter
	rmu, wmu  sync.Mutex
	closeOnce sync.Once
	closeErr  error
	hdr       [rpHeaderLen]byte
}

// NewRPPairing frames envelopes over rw: a TCP connection to a device's
// _remotepairing._tcp port, or the connection of the lockdown service
// com.apple.dt.remotepairingdeviced.lockdown. If rw has deadlines (a
// net.Conn) a context interrupts blocked I/O; otherwise, if rw is an
// io.Closer, cancellation closes it. Close closes rw when it is an io.Closer.
func NewRPPairing(rw io.ReadWriter) *RPPairing {
	return &RPPairing{rw: rw}
}

// WriteEnvelope sends one frame with a single Write.
func (t *RPPairing) WriteEnvelope(ctx context.Context, env map[string]any) error {
	body, err := encodeEnvelopeJSON(env)
	if err != nil {
		return fmt.Errorf("encode envelope: %w", err)
	}
	frame, err := AppendFrame(make([]byte, 0, rpHeaderLen+len(body)), body)
	if err != nil {
		return err
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	return ioWithContext(ctx, t.rw, false, func() error {
		_, err := t.rw.Write(frame)
		return err
	})
}

// ReadEnvelope reads exactly one frame.
func (t *RPPairing) ReadEnvelope(ctx context.Context) (map[string]any, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	var body []byte
	err := ioWithContext(ctx, t.rw, true, func() error {
		if _, err := io.ReadFull(t.rw, t.hdr[:]); err != nil {
			return err
		}
		n, err := parseFrameHeader(t.hdr[:])
		if err != nil {
			return err
		}
		body = make([]byte, n)
		_, err = io.ReadFull(t.rw, body)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return decodeEnvelopeJSON(body)
}

// Close closes the stream if it is an io.Closer.
func (t *RPPairing) Close() error {
	t.closeOnce.Do(func() {
		if c, ok := t.rw.(io.Closer); ok {
			t.closeErr = c.Close()
		}
	})
	return t.closeErr
}

var _ Transport = (*RPPairing)(nil)
