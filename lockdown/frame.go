package lockdown

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/internal/safeplist"
	"howett.net/plist"
)

// MaxFrameLen bounds one lockdown message. The largest real replies (all
// values of a device, a pair record) are tens of kilobytes; four megabytes
// leaves room for services that reuse this framing without letting a peer
// make us allocate gigabytes.
const MaxFrameLen = 4 << 20

// ErrMalformed marks a message that breaks the wire format: a bad length,
// a plist that does not decode, a reply that lacks what its request needs.
var ErrMalformed = errors.New("lockdown: malformed message")

// AppendFrame appends one message, a big-endian u32 length and the plist
// bytes (lockdown.md §1.1), to b.
func AppendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// ParseFrame splits one message off the front of b and returns its payload
// and the bytes after it. max bounds the payload (0 means MaxFrameLen).
func ParseFrame(b []byte, max int) (payload, rest []byte, err error) {
	if max <= 0 {
		max = MaxFrameLen
	}
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: %d bytes, want a 4-byte length", ErrMalformed, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if err := checkLen(n, max); err != nil {
		return nil, nil, err
	}
	if uint64(len(b)-4) < uint64(n) {
		return nil, nil, fmt.Errorf("%w: frame announces %d bytes, %d present", ErrMalformed, n, len(b)-4)
	}
	return b[4 : 4+n], b[4+n:], nil
}

func checkLen(n uint32, max int) error {
	if n == 0 {
		return fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if uint64(n) > uint64(max) {
		return fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrMalformed, n, max)
	}
	return nil
}

// readFrame reads one message's payload. It reads exactly the frame, so the
// bytes after it (a TLS handshake, a service protocol) stay in r.
func readFrame(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = MaxFrameLen
	}
	var lb [4]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if err := checkLen(n, max); err != nil {
		return nil, err
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %d-byte frame: %w", n, err)
	}
	return payload, nil
}

// encodeFrame encodes v as an XML plist frame, which every reference sends.
func encodeFrame(v any) ([]byte, error) {
	payload, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		return nil, fmt.Errorf("lockdown: encode plist: %w", err)
	}
	if len(payload) > MaxFrameLen {
		return nil, fmt.Errorf("lockdown: message of %d bytes exceeds the limit of %d", len(payload), MaxFrameLen)
	}
	return AppendFrame(make([]byte, 0, 4+len(payload)), payload), nil
}

// Message is a decoded lockdown dictionary. Values keep the types
// howett.net/plist gives them: string, bool, uint64 (int64 when negative),
// float64, []byte, time.Time, []any and map[string]any.
type Message map[string]any

// ParseMessage decodes one frame payload, which must be a dictionary in
// XML or binary plist form.
func ParseMessage(payload []byte) (Message, error) {
	var m map[string]any
	if err := decodePlist(payload, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("%w: plist is not a dictionary", ErrMalformed)
	}
	return m, nil
}

// decodePlist unmarshals an XML or binary plist into v (internal/safeplist:
// no text formats, no panics).
func decodePlist(b []byte, v any) error {
	if err := safeplist.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// String returns m[key] if it is a string.
func (m Message) String(key string) (string, bool) {
	s, ok := m[key].(string)
	return s, ok
}

// Bool returns m[key] if it is a bool.
func (m Message) Bool(key string) (bool, bool) {
	b, ok := m[key].(bool)
	return b, ok
}

// Data returns m[key] if it is data.
func (m Message) Data(key string) ([]byte, bool) {
	b, ok := m[key].([]byte)
	return b, ok
}

// Uint returns m[key] if it is a non-negative integer.
func (m Message) Uint(key string) (uint64, bool) {
	switch v := m[key].(type) {
	case uint64:
		return v, true
	case int64:
		if v >= 0 {
			return uint64(v), true
		}
	}
	return 0, false
}

// Dict returns m[key] if it is a dictionary.
func (m Message) Dict(key string) (Message, bool) {
	d, ok := m[key].(map[string]any)
	return d, ok
}
