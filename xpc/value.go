package xpc

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// Kind is an XPC object's wire type tag (xpc.md §3.2). The numeric value is the
// u32le tag written before the object's body.
type Kind uint32

// The type tags of xpc.md §3.2. Only null … dictionary and file_transfer occur
// in RemoteXPC traffic; the others exist so errors can name them and Opaque
// values can carry them.
const (
	KindNull            Kind = 0x00001000
	KindBool            Kind = 0x00002000
	KindInt64           Kind = 0x00003000
	KindUint64          Kind = 0x00004000
	KindDouble          Kind = 0x00005000
	KindPointer         Kind = 0x00006000
	KindDate            Kind = 0x00007000
	KindData            Kind = 0x00008000
	KindString          Kind = 0x00009000
	KindUUID            Kind = 0x0000A000
	KindFD              Kind = 0x0000B000
	KindShmem           Kind = 0x0000C000
	KindMachSend        Kind = 0x0000D000
	KindArray           Kind = 0x0000E000
	KindDict            Kind = 0x0000F000
	KindError           Kind = 0x00010000
	KindConnection      Kind = 0x00011000
	KindEndpoint        Kind = 0x00012000
	KindSerializer      Kind = 0x00013000
	KindPipe            Kind = 0x00014000
	KindMachRecv        Kind = 0x00015000
	KindBundle          Kind = 0x00016000
	KindService         Kind = 0x00017000
	KindServiceInstance Kind = 0x00018000
	KindActivity        Kind = 0x00019000
	KindFileTransfer    Kind = 0x0001A000
)

var kindNames = map[Kind]string{
	KindNull: "null", KindBool: "bool", KindInt64: "int64", KindUint64: "uint64",
	KindDouble: "double", KindPointer: "pointer", KindDate: "date", KindData: "data",
	KindString: "string", KindUUID: "uuid", KindFD: "fd", KindShmem: "shmem",
	KindMachSend: "mach_send", KindArray: "array", KindDict: "dictionary",
	KindError: "error", KindConnection: "connection", KindEndpoint: "endpoint",
	KindSerializer: "serializer", KindPipe: "pipe", KindMachRecv: "mach_recv",
	KindBundle: "bundle", KindService: "service", KindServiceInstance: "service_instance",
	KindActivity: "activity", KindFileTransfer: "file_transfer",
}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%#x)", uint32(k))
}

// Value is one XPC object. The concrete types are Null, Bool, Int64, Uint64,
// Double, Date, Data, String, UUID, Array, *Dict, FileTransfer, Pointer, FD,
// Shmem and Opaque; the set is closed. Each keeps its wire type, so decoding
// then encoding reproduces the input (int64 stays int64, a uuid never becomes
// a string).
type Value interface {
	Kind() Kind
	isValue()
}

// Null is the null object.
type Null struct{}

// Bool is a bool object (u32le 0 or 1).
type Bool bool

// Int64 is a signed 64-bit integer object (tag 0x3000).
type Int64 int64

// Uint64 is an unsigned 64-bit integer object (tag 0x4000). CoreDevice
// decoders reject it where they expect Int64 and vice versa (xpc.md §3.7).
type Uint64 uint64

// Double is an IEEE-754 binary64 object, little-endian on the wire.
type Double float64

// Date is a date object: nanoseconds since the Unix epoch, signed (xpc.md §3.9).
type Date int64

// Data is a byte-string object.
type Data []byte

// String is a UTF-8 string object without NUL bytes.
type String string

// UUID is a uuid object: 16 raw bytes in the order of the canonical text form.
// A UUID sent as text is a String, a different object (xpc.md §3.8).
type UUID [16]byte

// Array is an array object.
type Array []Value

// FileTransfer announces a file sent on an extra stream (xpc.md §3.10, §4).
// Object is, on the wire, always a dictionary {"s": Uint64 size}; it is kept
// as a Value so odd shapes still round-trip.
type FileTransfer struct {
	ID     uint64
	Object Value
}

// Pointer is libxpc's pointer object; its body is empty (pmd3's layout). It
// never occurs in RemoteXPC traffic and is decoded only with
// DecodeOptions.KernelObjects.
type Pointer struct{}

// FD is a file-descriptor object: a u32le per pmd3. It cannot meaningfully
// cross a network; decoded only with DecodeOptions.KernelObjects.
type FD uint32

// Shmem is a shared-memory object: u32le length, u32le of unknown meaning
// (pmd3). Decoded only with DecodeOptions.KernelObjects.
type Shmem struct {
	Length  uint32
	Unknown uint32
}

// Opaque carries an object whose body layout no reference documents (error,
// endpoint, connection, mach ports, …). The encoder writes Type, then Body
// padded with zeros to a multiple of 4. The RemoteXPC decoder never produces
// one: without a known layout it cannot find where the body ends, so it
// rejects such tags (xpc.md §3.2 requires that). Opaque exists so a
// misbehaving simulator can send them, errors can name them, and, with an
// 8-byte handle as Body (NewHandle), so the private dylib socket can refer to
// objects that stay inside CoreDeviceService (DecodeOptions.Handles).
type Opaque struct {
	Type Kind
	Body []byte
}

func (Null) Kind() Kind         { return KindNull }
func (Bool) Kind() Kind         { return KindBool }
func (Int64) Kind() Kind        { return KindInt64 }
func (Uint64) Kind() Kind       { return KindUint64 }
func (Double) Kind() Kind       { return KindDouble }
func (Date) Kind() Kind         { return KindDate }
func (Data) Kind() Kind         { return KindData }
func (String) Kind() Kind       { return KindString }
func (UUID) Kind() Kind         { return KindUUID }
func (Array) Kind() Kind        { return KindArray }
func (*Dict) Kind() Kind        { return KindDict }
func (FileTransfer) Kind() Kind { return KindFileTransfer }
func (Pointer) Kind() Kind      { return KindPointer }
func (FD) Kind() Kind           { return KindFD }
func (Shmem) Kind() Kind        { return KindShmem }
func (o Opaque) Kind() Kind     { return o.Type }

func (Null) isValue()         {}
func (Bool) isValue()         {}
func (Int64) isValue()        {}
func (Uint64) isValue()       {}
func (Double) isValue()       {}
func (Date) isValue()         {}
func (Data) isValue()         {}
func (String) isValue()       {}
func (UUID) isValue()         {}
func (Array) isValue()        {}
func (*Dict) isValue()        {}
func (FileTransfer) isValue() {}
func (Pointer) isValue()      {}
func (FD) isValue()           {}
func (Shmem) isValue()        {}
func (Opaque) isValue()       {}

// IsHandleKind reports whether objects of kind k are process-local in
// libxpc (descriptors, ports, connections, endpoints and the like): they
// cannot be encoded by value, only referred to by a handle on a private
// socket (DecodeOptions.Handles).
func IsHandleKind(k Kind) bool {
	switch k {
	case KindPointer, KindFD, KindShmem, KindMachSend, KindError, KindConnection, KindEndpoint,
		KindSerializer, KindPipe, KindMachRecv, KindBundle, KindService, KindServiceInstance, KindActivity:
		return true
	}
	return false
}

// NewHandle returns the handle form of a process-local object: its type
// tag and a u64le id chosen by the process that holds the object. Only
// decoders with DecodeOptions.Handles accept it.
func NewHandle(k Kind, id uint64) Opaque {
	return Opaque{Type: k, Body: binary.LittleEndian.AppendUint64(nil, id)}
}

// Handle returns the id of a handle made by NewHandle (or decoded with
// DecodeOptions.Handles).
func (o Opaque) Handle() (uint64, bool) {
	if !IsHandleKind(o.Type) || len(o.Body) != 8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(o.Body), true
}

// DateOf returns the Date for t (nanosecond precision).
func DateOf(t time.Time) Date { return Date(t.UnixNano()) }

// Time returns d as a UTC time.
func (d Date) Time() time.Time { return time.Unix(0, int64(d)).UTC() }

// NewFileTransfer returns the announcement of a file with the given transfer
// id and size, in the one shape every reference accepts.
func NewFileTransfer(id, size uint64) FileTransfer {
	return FileTransfer{ID: id, Object: NewDict("s", Uint64(size))}
}

// Size returns the announced size, if Object has the usual {"s": uint64} shape.
func (f FileTransfer) Size() (uint64, bool) {
	d, ok := f.Object.(*Dict)
	if !ok {
		return 0, false
	}
	v, ok := d.Get("s").(Uint64)
	return uint64(v), ok
}

// String returns the canonical lower-case dashed form.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// IsZero reports whether u is all zero bytes. CoreDeviceService drops a peer
// whose handshake UUID is zero (rsd.md §3).
func (u UUID) IsZero() bool { return u == UUID{} }

// MarshalText implements encoding.TextMarshaler (canonical dashed form).
func (u UUID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (u *UUID) UnmarshalText(b []byte) error {
	v, err := ParseUUID(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}

// ErrBadUUID is returned by ParseUUID for text that is not a UUID.
var ErrBadUUID = errors.New("xpc: malformed uuid")

// ParseUUID parses the dashed 36-character form (any case) or 32 hex digits.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	var h []byte
	switch len(s) {
	case 36:
		if s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
			return u, fmt.Errorf("%w: %q", ErrBadUUID, s)
		}
		h = []byte(s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:])
	case 32:
		h = []byte(s)
	default:
		return u, fmt.Errorf("%w: %q", ErrBadUUID, s)
	}
	if _, err := hex.Decode(u[:], h); err != nil {
		return UUID{}, fmt.Errorf("%w: %q", ErrBadUUID, s)
	}
	return u, nil
}

// NewRandomUUID returns a version-4 UUID drawn from r (crypto/rand if nil).
func NewRandomUUID(r io.Reader) (UUID, error) {
	if r == nil {
		r = rand.Reader
	}
	var u UUID
	if _, err := io.ReadFull(r, u[:]); err != nil {
		return UUID{}, fmt.Errorf("xpc: random uuid: %w", err)
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u, nil
}
