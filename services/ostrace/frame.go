package ostrace

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/internal/safeplist"
	"howett.net/plist"
)

// What the device sends is framed by a marker byte and a length
// (ostrace.md §2): requests are lockdown-framed plists, replies are not.
const (
	markerReply   = 0x01 // u32 big-endian length, then a plist
	markerRecord  = 0x02 // u32 little-endian length, then a record
	markerArchive = 0x03 // u32 little-endian length, then archive bytes
)

// Bounds on what the host reads: a PidList reply of a busy device is tens
// of kilobytes; archive chunks are the device's choice (the simulator sends
// at most 1 MiB).
const (
	maxReply        = 4 << 20
	maxArchiveChunk = 16 << 20
	// replyLimit is what the device role keeps a StartActivity or
	// CreateArchive reply under: pymobiledevice3 and go-ios read the
	// length as one byte (ostrace.md §2).
	replyLimit = 256
)

// ErrFrame marks a frame that breaks the framing.
var ErrFrame = errors.New("ostrace: malformed frame")

// readFrame reads one frame from the device: its marker and payload. buf is
// reused when large enough.
func readFrame(br *bufio.Reader, buf []byte) (marker byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	var n uint32
	var max int
	switch hdr[0] {
	case markerReply:
		n, max = binary.BigEndian.Uint32(hdr[1:]), maxReply
	case markerRecord:
		n, max = binary.LittleEndian.Uint32(hdr[1:]), MaxRecordLen
	case markerArchive:
		n, max = binary.LittleEndian.Uint32(hdr[1:]), maxArchiveChunk
	default:
		return 0, nil, fmt.Errorf("%w: unknown marker %#02x", ErrFrame, hdr[0])
	}
	if uint64(n) > uint64(max) {
		return 0, nil, fmt.Errorf("%w: marker %#02x announces %d bytes, more than %d", ErrFrame, hdr[0], n, max)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(br, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fmt.Errorf("ostrace: reading a %d-byte frame: %w", n, err)
	}
	return hdr[0], buf, nil
}

// appendFrame appends one frame with marker m.
func appendFrame(b []byte, m byte, payload []byte) []byte {
	b = append(b, m)
	if m == markerReply {
		b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	}
	return append(b, payload...)
}

// AppendRecordFrame appends r as the activity stream carries it.
func AppendRecordFrame(b []byte, r *Record) []byte {
	start := len(b)
	b = append(b, markerRecord, 0, 0, 0, 0)
	b = AppendRecord(b, r)
	binary.LittleEndian.PutUint32(b[start+1:], uint32(len(b)-start-5))
	return b
}

// appendReply appends a reply frame holding v as a binary plist, which
// keeps the StartActivity reply far under replyLimit.
func appendReply(b []byte, v any) ([]byte, error) {
	p, err := plist.Marshal(v, plist.BinaryFormat)
	if err != nil {
		return nil, fmt.Errorf("ostrace: encode reply: %w", err)
	}
	return appendFrame(b, markerReply, p), nil
}

// parseReply decodes a reply plist (XML or binary) into a dictionary.
func parseReply(payload []byte) (map[string]any, error) {
	var m map[string]any
	if err := safeplist.Unmarshal(payload, &m); err != nil {
		return nil, fmt.Errorf("%w: reply plist: %v", ErrFrame, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%w: reply is not a dictionary", ErrFrame)
	}
	return m, nil
}
