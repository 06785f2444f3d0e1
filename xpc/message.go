package xpc

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Wire constants of the message wrapper and payload header (xpc.md §2.1, §2.4).
const (
	WrapperMagic   uint32 = 0x29B00B92 // bytes 92 0b b0 29
	PayloadMagic   uint32 = 0x42133742 // bytes 42 37 13 42
	PayloadVersion uint32 = 5
	// HeaderLen is the size of the wrapper: magic, flags, body length, id.
	HeaderLen = 24
	// payloadHeaderLen is the payload magic and version before the root object.
	payloadHeaderLen = 8
)

// Flags is the wrapper's 32-bit flags word. The references treat it as a bit
// mask; frida reads it as a version byte, a type byte and 16 bits of flags,
// which explains every value on the wire (xpc.md §2.2). Both views are offered.
type Flags uint32

// Flag bits, named after the structural meaning (xpc.md §2.2).
const (
	FlagAlwaysSet     Flags = 0x00000001 // protocol version 1 (byte 4)
	FlagData          Flags = 0x00000100 // type MSG: the message carries a body
	FlagPing          Flags = 0x00000200 // type PING
	FlagWantsReply    Flags = 0x00010000
	FlagReply         Flags = 0x00020000
	FlagFileTxOpen    Flags = 0x00100000 // sender will transmit file bytes on this stream
	FlagFileRxOpen    Flags = 0x00200000 // sender will receive file bytes on this stream
	FlagInitHandshake Flags = 0x00400000 // opens the reply channel (stream 3)
)

// The flag words that occur in practice (xpc.md §2.2).
const (
	FlagsHeader      = FlagAlwaysSet                             // 0x00000001 channel open
	FlagsPingMsg     = FlagAlwaysSet | FlagPing                  // 0x00000201
	FlagsReplyOpen   = FlagAlwaysSet | FlagInitHandshake         // 0x00400001
	FlagsMsg         = FlagAlwaysSet | FlagData                  // 0x00000101 one-way message
	FlagsRequest     = FlagAlwaysSet | FlagData | FlagWantsReply // 0x00010101
	FlagsReplyMsg    = FlagAlwaysSet | FlagData | FlagReply      // 0x00020101
	FlagsFileTxStart = FlagAlwaysSet | FlagFileTxOpen            // 0x00100001
	FlagsFileRxStart = FlagAlwaysSet | FlagFileRxOpen            // 0x00200001
)

// MessageType is byte 5 of the flags word in frida's reading.
type MessageType uint8

const (
	TypeHeader MessageType = 0 // channel or stream open
	TypeMsg    MessageType = 1 // a message with a body
	TypePing   MessageType = 2
)

func (t MessageType) String() string {
	switch t {
	case TypeHeader:
		return "HEADER"
	case TypeMsg:
		return "MSG"
	case TypePing:
		return "PING"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Version returns byte 4 (always 1 on the wire).
func (f Flags) Version() uint8 { return uint8(f) }

// Type returns byte 5: HEADER, MSG or PING.
func (f Flags) Type() MessageType { return MessageType(f >> 8) }

// Has reports whether every bit of g is set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }

func (f Flags) String() string {
	var parts []string
	for _, b := range []struct {
		f Flags
		n string
	}{{FlagWantsReply, "WANTS_REPLY"}, {FlagReply, "REPLY"}, {FlagFileTxOpen, "FILE_TX"},
		{FlagFileRxOpen, "FILE_RX"}, {FlagInitHandshake, "INIT_HANDSHAKE"}} {
		if f.Has(b.f) {
			parts = append(parts, b.n)
		}
	}
	s := fmt.Sprintf("%#08x %s", uint32(f), f.Type())
	if len(parts) > 0 {
		s += "|" + strings.Join(parts, "|")
	}
	return s
}

// Header is the 24-byte message wrapper.
type Header struct {
	Flags   Flags
	BodyLen uint64 // bytes after the id field; 0 = no body
	ID      uint64
}

// Len returns the size of the whole message: HeaderLen + BodyLen (saturating).
func (h Header) Len() uint64 {
	if h.BodyLen > 1<<63 {
		return 1 << 63
	}
	return HeaderLen + h.BodyLen
}

// AppendBinary appends the 24 wrapper bytes.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint32(b, WrapperMagic)
	b = binary.LittleEndian.AppendUint32(b, uint32(h.Flags))
	b = binary.LittleEndian.AppendUint64(b, h.BodyLen)
	b = binary.LittleEndian.AppendUint64(b, h.ID)
	return b, nil
}

// ParseHeader parses the wrapper at the start of b. It needs HeaderLen bytes
// (ErrTruncated otherwise) and checks only the magic: callers cutting messages
// out of a stream check BodyLen against their own bound.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, &SyntaxError{Offset: len(b), Msg: "message header", Err: ErrTruncated}
	}
	if m := binary.LittleEndian.Uint32(b); m != WrapperMagic {
		return Header{}, &SyntaxError{Offset: 0, Msg: fmt.Sprintf("bad wrapper magic %#08x", m)}
	}
	return Header{
		Flags:   Flags(binary.LittleEndian.Uint32(b[4:])),
		BodyLen: binary.LittleEndian.Uint64(b[8:]),
		ID:      binary.LittleEndian.Uint64(b[16:]),
	}, nil
}

// Message is one RemoteXPC message: the wrapper fields and an optional body
// whose root is always a dictionary (xpc.md §2.4; go-ios and appium reject any
// other root, and nothing else has been seen on the wire).
type Message struct {
	Flags Flags
	ID    uint64
	Body  *Dict // nil: no body, a 24-byte message
}

func (m *Message) String() string {
	return fmt.Sprintf("xpc message id %d flags %s body %d entries", m.ID, m.Flags, m.Body.Len())
}

// AppendBinary appends the encoded message (wrapper, payload header, root
// dictionary) to b. It fails only for values that cannot be represented
// (strings or keys with NUL bytes or invalid UTF-8, lengths beyond 32 bits,
// nesting deeper than DefaultMaxDepth, a nil Value).
func (m *Message) AppendBinary(b []byte) ([]byte, error) {
	start := len(b)
	b, _ = Header{Flags: m.Flags, ID: m.ID}.AppendBinary(b)
	if m.Body == nil {
		return b, nil
	}
	b = binary.LittleEndian.AppendUint32(b, PayloadMagic)
	b = binary.LittleEndian.AppendUint32(b, PayloadVersion)
	b, err := appendValue(b, m.Body, 0)
	if err != nil {
		return b[:start], err
	}
	binary.LittleEndian.PutUint64(b[start+8:], uint64(len(b)-start-HeaderLen))
	return b, nil
}

// MarshalBinary returns the encoded message.
func (m *Message) MarshalBinary() ([]byte, error) { return m.AppendBinary(nil) }
