package usbmux

import (
	"encoding/binary"
	"fmt"
)

// HeaderLen is the size of the fixed header in front of every usbmuxd
// message, in both directions (usbmux.md §2).
const HeaderLen = 16

// MaxMessageLen bounds the total length (header included) of one message we
// read. Real replies are a few kilobytes (a pair record is about 5 KiB, a
// device list about 1 KiB per device); a megabyte leaves room for hundreds of
// devices while keeping a hostile peer from making us allocate more.
const MaxMessageLen = 1 << 20

// Protocol versions carried in Header.Version.
const (
	VersionBinary uint32 = 0 // legacy binary protocol (usbmux.md §4), not spoken
	VersionPlist  uint32 = 1 // plist protocol, the only one iosmux speaks
)

// MessageType is the third header word.
type MessageType uint32

// Message types (usbmux.md §2). Only MessagePlist is used by the plist protocol;
// the others appear in the legacy binary protocol.
const (
	MessageResult       MessageType = 1
	MessageConnect      MessageType = 2
	MessageListen       MessageType = 3
	MessageDeviceAdd    MessageType = 4
	MessageDeviceRemove MessageType = 5
	MessageDevicePaired MessageType = 6
	MessagePlist        MessageType = 8
)

func (m MessageType) String() string {
	switch m {
	case MessageResult:
		return "RESULT"
	case MessageConnect:
		return "CONNECT"
	case MessageListen:
		return "LISTEN"
	case MessageDeviceAdd:
		return "DEVICE_ADD"
	case MessageDeviceRemove:
		return "DEVICE_REMOVE"
	case MessageDevicePaired:
		return "DEVICE_PAIRED"
	case MessagePlist:
		return "PLIST"
	}
	return fmt.Sprintf("MessageType(%d)", uint32(m))
}

// Header is the 16-byte little-endian message header. Length counts the
// header itself, so the payload is Length-16 bytes.
type Header struct {
	Length  uint32
	Version uint32
	Message MessageType
	Tag     uint32
}

// PayloadLen is the number of payload bytes that follow the header.
func (h Header) PayloadLen() int { return int(h.Length) - HeaderLen }

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, h.Length)
	b = binary.LittleEndian.AppendUint32(b, h.Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(h.Message))
	return binary.LittleEndian.AppendUint32(b, h.Tag)
}

// ParseHeader decodes the header at the start of b and checks that Length
// lies within [HeaderLen, max]. Bytes after the header are ignored; callers
// read the payload separately. A max of 0 means MaxMessageLen.
func ParseHeader(b []byte, max int) (Header, error) {
	if max <= 0 {
		max = MaxMessageLen
	}
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrMalformed, len(b), HeaderLen)
	}
	h := Header{
		Length:  binary.LittleEndian.Uint32(b[0:]),
		Version: binary.LittleEndian.Uint32(b[4:]),
		Message: MessageType(binary.LittleEndian.Uint32(b[8:])),
		Tag:     binary.LittleEndian.Uint32(b[12:]),
	}
	if h.Length < HeaderLen {
		return Header{}, fmt.Errorf("%w: message length %d is shorter than the %d-byte header", ErrMalformed, h.Length, HeaderLen)
	}
	if uint64(h.Length) > uint64(max) {
		return Header{}, fmt.Errorf("%w: message length %d exceeds the limit of %d bytes", ErrMalformed, h.Length, max)
	}
	return h, nil
}
