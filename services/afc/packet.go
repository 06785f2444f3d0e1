package afc

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the fixed part of every packet (docs/protocols/afc.md §2).
const HeaderSize = 40

// magic is "CFA6LPAA" read as a little-endian u64.
const magic uint64 = 0x4141504c36414643

// Opcode is a packet's operation (docs/protocols/afc.md §3).
type Opcode uint64

// Opcodes. Requests and replies share the numbering.
const (
	OpStatus                Opcode = 0x01
	OpData                  Opcode = 0x02
	OpReadDir               Opcode = 0x03
	OpReadFile              Opcode = 0x04
	OpWriteFile             Opcode = 0x05
	OpWritePart             Opcode = 0x06
	OpTruncate              Opcode = 0x07
	OpRemovePath            Opcode = 0x08
	OpMakeDir               Opcode = 0x09
	OpGetFileInfo           Opcode = 0x0A
	OpGetDevInfo            Opcode = 0x0B
	OpWriteFileAtom         Opcode = 0x0C
	OpFileOpen              Opcode = 0x0D
	OpFileOpenRes           Opcode = 0x0E
	OpRead                  Opcode = 0x0F
	OpWrite                 Opcode = 0x10
	OpFileSeek              Opcode = 0x11
	OpFileTell              Opcode = 0x12
	OpFileTellRes           Opcode = 0x13
	OpFileClose             Opcode = 0x14
	OpFileSetSize           Opcode = 0x15
	OpGetConInfo            Opcode = 0x16
	OpSetConOptions         Opcode = 0x17
	OpRenamePath            Opcode = 0x18
	OpSetFSBlockSize        Opcode = 0x19
	OpSetSocketBlockSize    Opcode = 0x1A
	OpFileLock              Opcode = 0x1B
	OpMakeLink              Opcode = 0x1C
	OpGetFileHash           Opcode = 0x1D
	OpSetFileTime           Opcode = 0x1E
	OpRemovePathAndContents Opcode = 0x22
)

var opNames = map[Opcode]string{
	OpStatus: "STATUS", OpData: "DATA", OpReadDir: "READ_DIR", OpReadFile: "READ_FILE",
	OpWriteFile: "WRITE_FILE", OpWritePart: "WRITE_PART", OpTruncate: "TRUNCATE",
	OpRemovePath: "REMOVE_PATH", OpMakeDir: "MAKE_DIR", OpGetFileInfo: "GET_FILE_INFO",
	OpGetDevInfo: "GET_DEVINFO", OpWriteFileAtom: "WRITE_FILE_ATOM", OpFileOpen: "FILE_OPEN",
	OpFileOpenRes: "FILE_OPEN_RES", OpRead: "READ", OpWrite: "WRITE", OpFileSeek: "FILE_SEEK",
	OpFileTell: "FILE_TELL", OpFileTellRes: "FILE_TELL_RES", OpFileClose: "FILE_CLOSE",
	OpFileSetSize: "FILE_SET_SIZE", OpGetConInfo: "GET_CON_INFO", OpSetConOptions: "SET_CON_OPTIONS",
	OpRenamePath: "RENAME_PATH", OpSetFSBlockSize: "SET_FS_BS", OpSetSocketBlockSize: "SET_SOCKET_BS",
	OpFileLock: "FILE_LOCK", OpMakeLink: "MAKE_LINK", OpGetFileHash: "GET_FILE_HASH",
	OpSetFileTime: "SET_FILE_TIME", OpRemovePathAndContents: "REMOVE_PATH_AND_CONTENTS",
}

func (o Opcode) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Opcode(%#x)", uint64(o))
}

// defined reports whether o is an opcode of the protocol.
func (o Opcode) defined() bool { _, ok := opNames[o]; return ok }

// Header is the fixed 40 bytes of a packet. EntireLen counts the whole
// packet, ThisLen the header and its header part (the fixed arguments);
// the data part (bulk bytes) is the rest.
type Header struct {
	EntireLen uint64
	ThisLen   uint64
	Num       uint64 // packet_num: the host's counter, echoed in the reply
	Op        Opcode
}

// ArgsLen is the length of the header part.
func (h Header) ArgsLen() uint64 { return h.ThisLen - HeaderSize }

// DataLen is the length of the data part.
func (h Header) DataLen() uint64 { return h.EntireLen - h.ThisLen }

// Errors of the packet layer.
var (
	ErrBadMagic  = errors.New("afc: bad packet magic")
	ErrBadLength = errors.New("afc: bad packet length")
	ErrTooLarge  = errors.New("afc: packet larger than allowed")
)

// ParseHeader decodes the first HeaderSize bytes of b. It rejects a wrong
// magic, this_length below the header size and entire_length below
// this_length (go-ios's sanity rules; appium and idevice check the magic).
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: %d bytes, want %d", ErrBadLength, len(b), HeaderSize)
	}
	if binary.LittleEndian.Uint64(b) != magic {
		return Header{}, ErrBadMagic
	}
	h := Header{
		EntireLen: binary.LittleEndian.Uint64(b[8:]),
		ThisLen:   binary.LittleEndian.Uint64(b[16:]),
		Num:       binary.LittleEndian.Uint64(b[24:]),
		Op:        Opcode(binary.LittleEndian.Uint64(b[32:])),
	}
	if h.ThisLen < HeaderSize || h.EntireLen < h.ThisLen {
		return Header{}, fmt.Errorf("%w: entire_length %d, this_length %d", ErrBadLength, h.EntireLen, h.ThisLen)
	}
	return h, nil
}

// AppendHeader appends the 40-byte header of a packet numbered num with
// an args-byte header part and a data-byte data part.
func AppendHeader(b []byte, num uint64, op Opcode, args, data int) []byte {
	this := uint64(HeaderSize + args)
	b = binary.LittleEndian.AppendUint64(b, magic)
	b = binary.LittleEndian.AppendUint64(b, this+uint64(data))
	b = binary.LittleEndian.AppendUint64(b, this)
	b = binary.LittleEndian.AppendUint64(b, num)
	return binary.LittleEndian.AppendUint64(b, uint64(op))
}

// Packet is one decoded packet: Args is the header part, Data the data
// part.
type Packet struct {
	Num  uint64
	Op   Opcode
	Args []byte
	Data []byte
}

// Append appends p's encoding.
func (p Packet) Append(b []byte) []byte {
	b = AppendHeader(b, p.Num, p.Op, len(p.Args), len(p.Data))
	b = append(b, p.Args...)
	return append(b, p.Data...)
}

// ParsePacket decodes exactly one packet from b; max bounds entire_length
// (0 means no bound beyond len(b)). Trailing bytes are an error. The
// returned slices alias b.
func ParsePacket(b []byte, max uint64) (Packet, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return Packet{}, err
	}
	if max > 0 && h.EntireLen > max {
		return Packet{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, h.EntireLen, max)
	}
	if h.EntireLen != uint64(len(b)) {
		return Packet{}, fmt.Errorf("%w: entire_length %d, have %d bytes", ErrBadLength, h.EntireLen, len(b))
	}
	return Packet{Num: h.Num, Op: h.Op, Args: b[HeaderSize:h.ThisLen], Data: b[h.ThisLen:]}, nil
}

// The request header parts (docs/protocols/afc.md §3). Paths end at their
// first NUL or at the end of the header part: pmd3, appium and go-ios's
// open and mkdir send a NUL, idevice and go-ios's list, stat and remove do
// not; a device accepts both. Hosts built here always send the NUL.

// appendPath appends a NUL-terminated path.
func appendPath(b []byte, p string) []byte { return append(append(b, p...), 0) }

// cutString returns the string up to the first NUL of b (or all of b) and
// the bytes after that NUL.
func cutString(b []byte) (string, []byte) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:]
		}
	}
	return string(b), nil
}

// u64 reads the i-th little-endian u64 of b; ok is false when b is short.
func u64(b []byte, i int) (uint64, bool) {
	if len(b) < 8*(i+1) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8*i:]), true
}
