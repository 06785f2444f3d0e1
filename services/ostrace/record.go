package ostrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Level is a record's level byte (ostrace.md §3.2).
type Level uint8

// The levels of os_log, as os_trace_relay sends them.
const (
	LevelDefault    Level = 0x00
	LevelInfo       Level = 0x01
	LevelDebug      Level = 0x02
	LevelUserAction Level = 0x03
	LevelError      Level = 0x10
	LevelFault      Level = 0x11
)

func (l Level) String() string {
	switch l {
	case LevelDefault:
		return "Default"
	case LevelInfo:
		return "Info"
	case LevelDebug:
		return "Debug"
	case LevelUserAction:
		return "UserAction"
	case LevelError:
		return "Error"
	case LevelFault:
		return "Fault"
	}
	return fmt.Sprintf("Level(%#x)", uint8(l))
}

// HeaderLen is the fixed part of a record, before its strings.
const HeaderLen = 129

// MaxRecordLen bounds one record. Strings are counted in 16-bit lengths but
// for subsystem and category, whose 32-bit lengths a device keeps short; a
// megabyte is far above any real record.
const MaxRecordLen = 1 << 20

// Record is one log message from os_trace_relay's activity stream
// (ostrace.md §3.2). Fields whose meaning no reference settles are not
// kept; AppendRecord writes zeros there.
type Record struct {
	PID         uint32
	UniquePID   uint64   // the process's unique id (pymobiledevice3's reading)
	ProcessUUID [16]byte // UUID of the process's main executable
	Time        time.Time
	Level       Level
	MachTime    uint64 // mach continuous time when logged
	ThreadID    uint64
	ImageUUID   [16]byte // UUID of the image that logged
	ImageOffset uint32   // the call site's offset in that image
	Filename    string   // the process's executable path
	ImageName   string   // the path of the image that logged
	Message     string
	Subsystem   string
	Category    string
	// Extra is what followed the strings in the record: nothing in the
	// records the references show, kept so that nothing is dropped.
	Extra []byte
}

// Process is the process name: the executable path's last element.
func (r *Record) Process() string {
	if r.Filename == "" {
		return ""
	}
	return path.Base(r.Filename)
}

// Offsets of the fields in the fixed header (ostrace.md §3.2).
const (
	offPID         = 9
	offUniquePID   = 13
	offProcessUUID = 21
	offFilenameLen = 37
	offSeconds     = 55
	offMicros      = 63
	offLevel       = 68
	offMachTime    = 73
	offThreadID    = 83
	offImageUUID   = 91
	offImageLen    = 107
	offMessageLen  = 109
	offImageOffset = 113
	offSubsystem   = 117
	offCategory    = 121
)

// ErrRecord marks a record that breaks the layout.
var ErrRecord = errors.New("ostrace: malformed record")

// ParseRecord decodes one record (without its frame). Every length is
// checked against what is left; a string must end in its NUL.
func ParseRecord(b []byte) (Record, error) {
	if len(b) < HeaderLen {
		return Record{}, fmt.Errorf("%w: %d bytes, the header alone is %d", ErrRecord, len(b), HeaderLen)
	}
	if len(b) > MaxRecordLen {
		return Record{}, fmt.Errorf("%w: %d bytes, more than %d", ErrRecord, len(b), MaxRecordLen)
	}
	le := binary.LittleEndian
	r := Record{
		PID:         le.Uint32(b[offPID:]),
		UniquePID:   le.Uint64(b[offUniquePID:]),
		Level:       Level(b[offLevel]),
		MachTime:    le.Uint64(b[offMachTime:]),
		ThreadID:    le.Uint64(b[offThreadID:]),
		ImageOffset: le.Uint32(b[offImageOffset:]),
	}
	copy(r.ProcessUUID[:], b[offProcessUUID:])
	copy(r.ImageUUID[:], b[offImageUUID:])
	secs, micros := le.Uint64(b[offSeconds:]), le.Uint32(b[offMicros:])
	if secs > 1<<40 || micros >= 1e6 {
		return Record{}, fmt.Errorf("%w: time %d s %d µs", ErrRecord, secs, micros)
	}
	r.Time = time.Unix(int64(secs), int64(micros)*1000).UTC()

	rest := b[HeaderLen:]
	var err error
	take := func(field string, n uint64) string {
		if err != nil || n == 0 {
			return ""
		}
		if n > uint64(len(rest)) {
			err = fmt.Errorf("%w: %s of %d bytes, %d left", ErrRecord, field, n, len(rest))
			return ""
		}
		s := rest[:n]
		rest = rest[n:]
		if s[n-1] != 0 {
			err = fmt.Errorf("%w: %s does not end in NUL", ErrRecord, field)
			return ""
		}
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		return string(s)
	}
	r.Filename = take("file name", uint64(le.Uint16(b[offFilenameLen:])))
	r.ImageName = take("image name", uint64(le.Uint16(b[offImageLen:])))
	r.Message = take("message", uint64(le.Uint16(b[offMessageLen:])))
	// Subsystem and category come as a pair or not at all.
	if sub, cat := le.Uint32(b[offSubsystem:]), le.Uint32(b[offCategory:]); sub != 0 && cat != 0 {
		r.Subsystem = take("subsystem", uint64(sub))
		r.Category = take("category", uint64(cat))
	}
	if err != nil {
		return Record{}, err
	}
	if len(rest) > 0 {
		r.Extra = bytes.Clone(rest)
	}
	return r, nil
}

// AppendRecord appends r's encoding (without a frame) to b. Strings are cut
// at a NUL inside them and at 65534 bytes, which the 16-bit lengths allow.
func AppendRecord(b []byte, r *Record) []byte {
	le := binary.LittleEndian
	start := len(b)
	b = append(b, make([]byte, HeaderLen)...)
	h := b[start:]
	cstr := func(s string) string {
		if i := strings.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		if len(s) > 0xfffe {
			s = s[:0xfffe]
		}
		return s
	}
	fn, img, msg := cstr(r.Filename), cstr(r.ImageName), cstr(r.Message)
	sub, cat := cstr(r.Subsystem), cstr(r.Category)
	strLen := func(s string) int {
		if s == "" {
			return 0
		}
		return len(s) + 1
	}
	le.PutUint32(h[offPID:], r.PID)
	le.PutUint64(h[offUniquePID:], r.UniquePID)
	copy(h[offProcessUUID:], r.ProcessUUID[:])
	le.PutUint16(h[offFilenameLen:], uint16(strLen(fn)))
	secs, micros := int64(0), int64(0)
	// Before 1970 cannot be said; the epoch itself, with its microseconds,
	// can (a fuzzer found 0 s 77872 µs lost here).
	if r.Time.Unix() >= 0 {
		secs, micros = r.Time.Unix(), int64(r.Time.Nanosecond()/1000)
	}
	le.PutUint64(h[offSeconds:], uint64(secs))
	le.PutUint32(h[offMicros:], uint32(micros))
	h[offLevel] = byte(r.Level)
	le.PutUint64(h[offMachTime:], r.MachTime)
	le.PutUint64(h[offThreadID:], r.ThreadID)
	copy(h[offImageUUID:], r.ImageUUID[:])
	le.PutUint16(h[offImageLen:], uint16(strLen(img)))
	le.PutUint16(h[offMessageLen:], uint16(strLen(msg)))
	le.PutUint32(h[offImageOffset:], r.ImageOffset)
	withLabel := sub != "" || cat != ""
	if withLabel {
		le.PutUint32(h[offSubsystem:], uint32(len(sub)+1))
		le.PutUint32(h[offCategory:], uint32(len(cat)+1))
	}
	for _, s := range []string{fn, img, msg} {
		if s != "" {
			b = append(append(b, s...), 0)
		}
	}
	if withLabel {
		b = append(append(b, sub...), 0)
		b = append(append(b, cat...), 0)
	}
	return append(b, r.Extra...)
}
