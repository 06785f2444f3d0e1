package dylib

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/iosmux/iosmux/xpc"
)

// Version is the frame format version.
const Version = 1

// Protocol is the message protocol version negotiated in HELLO/HELLO_ACK.
const Protocol = 1

const (
	// HeaderLen is the fixed frame header: length, version, kind, flags,
	// correlation id.
	HeaderLen = 4 + 1 + 1 + 2 + 8
	// MaxFrame bounds a frame's length field (bytes after it); a larger
	// frame is a protocol error and the connection closes.
	MaxFrame = 16 << 20
	// maxDepth bounds payload nesting.
	maxDepth = 64
)

// FlagResponse marks a frame that answers the frame with the same
// correlation id.
const FlagResponse uint16 = 1

// Kind is a message kind.
type Kind uint8

const (
	KindHello           Kind = 0x01
	KindHelloAck        Kind = 0x02
	KindDeviceAttach    Kind = 0x10
	KindDeviceUpdate    Kind = 0x11
	KindDeviceDetach    Kind = 0x12
	KindActionRequest   Kind = 0x20
	KindActionResponse  Kind = 0x21
	KindSideChannelSend Kind = 0x30
	KindBroadcastEvent  Kind = 0x31
	KindReleaseHandle   Kind = 0x32
	KindLog             Kind = 0x40
	KindError           Kind = 0x7F
)

var kindNames = map[Kind]string{
	KindHello: "HELLO", KindHelloAck: "HELLO_ACK", KindDeviceAttach: "DEVICE_ATTACH",
	KindDeviceUpdate: "DEVICE_UPDATE", KindDeviceDetach: "DEVICE_DETACH",
	KindActionRequest: "ACTION_REQUEST", KindActionResponse: "ACTION_RESPONSE",
	KindSideChannelSend: "SIDECHANNEL_SEND", KindBroadcastEvent: "BROADCAST_EVENT",
	KindReleaseHandle: "RELEASE_HANDLE", KindLog: "LOG", KindError: "ERROR",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%#02x)", uint8(k))
}

// Known reports whether k is a kind of this protocol version.
func (k Kind) Known() bool { _, ok := kindNames[k]; return ok }

// Frame is one message.
type Frame struct {
	Kind        Kind
	Flags       uint16
	Correlation uint64
	// Payload is the message body; nil means an empty payload.
	Payload xpc.Value
}

// ErrTruncated means the input ends before the frame does (a stream reader
// waits for more).
var ErrTruncated = errors.New("dylib: truncated frame")

// ProtocolError is a frame that breaks the protocol; the receiver answers
// ERROR with Code and closes the connection.
type ProtocolError struct {
	Code string // "version", "kind", "length", "payload", "message"
	Msg  string
}

func (e *ProtocolError) Error() string { return "dylib: protocol error (" + e.Code + "): " + e.Msg }

// AppendBinary appends f's encoding to b.
func (f Frame) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, Version, byte(f.Kind))
	b = binary.BigEndian.AppendUint16(b, f.Flags)
	b = binary.BigEndian.AppendUint64(b, f.Correlation)
	if f.Payload != nil {
		var err error
		if b, err = xpc.AppendValue(b, f.Payload); err != nil {
			return b[:start], fmt.Errorf("dylib: %v payload: %w", f.Kind, err)
		}
	}
	n := len(b) - start - 4
	if n > MaxFrame {
		return b[:start], &ProtocolError{Code: "length", Msg: fmt.Sprintf("%v frame of %d bytes exceeds %d", f.Kind, n, MaxFrame)}
	}
	binary.BigEndian.PutUint32(b[start:], uint32(n))
	return b, nil
}

// FrameLen returns the length of the frame at the start of b (header
// included), ErrTruncated if b does not hold its length field yet, or a
// ProtocolError for a length over MaxFrame or under the header.
func FrameLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, ErrTruncated
	}
	n := binary.BigEndian.Uint32(b)
	if n > MaxFrame {
		return 0, &ProtocolError{Code: "length", Msg: fmt.Sprintf("frame of %d bytes exceeds %d", n, MaxFrame)}
	}
	if n < HeaderLen-4 {
		return 0, &ProtocolError{Code: "length", Msg: fmt.Sprintf("frame of %d bytes is shorter than its header", n)}
	}
	return 4 + int(n), nil
}

// ParseFrame decodes exactly one frame filling b. A frame of an unknown
// kind is returned together with a ProtocolError (code "kind") so the
// receiver can name it in its ERROR.
func ParseFrame(b []byte) (Frame, error) {
	n, err := FrameLen(b)
	if err != nil {
		return Frame{}, err
	}
	if len(b) < n {
		return Frame{}, ErrTruncated
	}
	if len(b) > n {
		return Frame{}, &ProtocolError{Code: "length", Msg: fmt.Sprintf("%d bytes after the frame", len(b)-n)}
	}
	f := Frame{Kind: Kind(b[5]), Flags: binary.BigEndian.Uint16(b[6:]), Correlation: binary.BigEndian.Uint64(b[8:])}
	if b[4] != Version {
		return f, &ProtocolError{Code: "version", Msg: fmt.Sprintf("frame version %d, want %d", b[4], Version)}
	}
	if len(b) > HeaderLen {
		v, err := xpc.DecodeOptions{Handles: true, MaxDepth: maxDepth, MaxBody: MaxFrame}.DecodeValue(b[HeaderLen:])
		if err != nil {
			return f, &ProtocolError{Code: "payload", Msg: fmt.Sprintf("%v payload: %v", f.Kind, err)}
		}
		f.Payload = v
	}
	if !f.Kind.Known() {
		return f, &ProtocolError{Code: "kind", Msg: fmt.Sprintf("unknown kind %#02x", uint8(f.Kind))}
	}
	return f, nil
}
