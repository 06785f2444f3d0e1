package zipconduit

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The streaming zip (docs/protocols/zipconduit.md §3): local file headers
// only, with the values Xcode sends (go-ios copied them from a capture).
const (
	localHeaderSig = 0x04034b50
	localHeaderLen = 30
	zipVersion     = 20
	dosTime        = 0xBDEF
	dosDate        = 0x52EC
	// MetadataName is the second entry, after its folder.
	MetadataName = "META-INF/com.apple.ZipMetadata.plist"
	// Permissions the metadata declares (Xcode's values).
	stdDirPerms  = 16877  // 0o40755
	stdFilePerms = -32348 // 0o100644 as a signed 16-bit number
)

// centralDirMarker ends the stream: the signature of a central directory
// header, and nothing after it.
var centralDirMarker = []byte{0x50, 0x4b, 0x01, 0x02}

// extraField is the fixed extra field of every entry (a Unix timestamp
// block and a uid/gid block, as Xcode writes them).
var extraField = []byte{
	0x55, 0x54, 0x0d, 0x00, 0x07, 0xf3, 0xa2, 0xec, 0x60, 0xf6, 0xa2, 0xec, 0x60, 0xf3, 0xa2, 0xec,
	0x60, 0x75, 0x78, 0x0b, 0x00, 0x01, 0x04, 0xf5, 0x01, 0x00, 0x00, 0x04, 0x14, 0x00, 0x00, 0x00,
}

// AppendEntryHeader appends the local file header of one entry, stored
// uncompressed: size bytes follow it (none for a folder, whose name ends
// in "/").
func AppendEntryHeader(b []byte, name string, crc, size uint32) []byte {
	b = binary.LittleEndian.AppendUint32(b, localHeaderSig)
	b = binary.LittleEndian.AppendUint16(b, zipVersion)
	b = binary.LittleEndian.AppendUint16(b, 0) // flags: no data descriptor
	b = binary.LittleEndian.AppendUint16(b, 0) // stored
	b = binary.LittleEndian.AppendUint16(b, dosTime)
	b = binary.LittleEndian.AppendUint16(b, dosDate)
	b = binary.LittleEndian.AppendUint32(b, crc)
	b = binary.LittleEndian.AppendUint32(b, size) // compressed
	b = binary.LittleEndian.AppendUint32(b, size) // uncompressed
	b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(extraField)))
	b = append(b, name...)
	return append(b, extraField...)
}

// EntryHeader is a decoded local file header.
type EntryHeader struct {
	Flags, Method        uint16
	CRC                  uint32
	CompressedSize, Size uint32
	NameLen, ExtraLen    uint16
}

// Methods the device role accepts.
const (
	methodStore   = 0
	methodDeflate = 8
)

var (
	errEnd       = errors.New("zipconduit: end of stream")
	errBadHeader = errors.New("zipconduit: bad entry header")
)

// ParseEntryHeader decodes the 30 fixed bytes of an entry, or reports the
// end marker with errEnd. A header asking for a data descriptor (sizes
// after the data) cannot be streamed and is refused.
func ParseEntryHeader(b []byte) (EntryHeader, error) {
	if len(b) < localHeaderLen {
		return EntryHeader{}, fmt.Errorf("%w: %d bytes", errBadHeader, len(b))
	}
	switch sig := binary.LittleEndian.Uint32(b); sig {
	case localHeaderSig:
	case binary.LittleEndian.Uint32(centralDirMarker):
		return EntryHeader{}, errEnd
	default:
		return EntryHeader{}, fmt.Errorf("%w: signature %#08x", errBadHeader, sig)
	}
	h := EntryHeader{
		Flags:          binary.LittleEndian.Uint16(b[6:]),
		Method:         binary.LittleEndian.Uint16(b[8:]),
		CRC:            binary.LittleEndian.Uint32(b[14:]),
		CompressedSize: binary.LittleEndian.Uint32(b[18:]),
		Size:           binary.LittleEndian.Uint32(b[22:]),
		NameLen:        binary.LittleEndian.Uint16(b[26:]),
		ExtraLen:       binary.LittleEndian.Uint16(b[28:]),
	}
	if h.Flags&0x8 != 0 {
		return EntryHeader{}, fmt.Errorf("%w: data descriptor", errBadHeader)
	}
	if h.Flags&0x1 != 0 {
		return EntryHeader{}, fmt.Errorf("%w: encrypted entry", errBadHeader)
	}
	switch h.Method {
	case methodStore:
		if h.CompressedSize != h.Size {
			return EntryHeader{}, fmt.Errorf("%w: stored entry with sizes %d and %d", errBadHeader, h.CompressedSize, h.Size)
		}
	case methodDeflate:
	default:
		return EntryHeader{}, fmt.Errorf("%w: compression method %d", errBadHeader, h.Method)
	}
	if h.NameLen == 0 {
		return EntryHeader{}, fmt.Errorf("%w: entry without a name", errBadHeader)
	}
	return h, nil
}

// Metadata is META-INF/com.apple.ZipMetadata.plist.
type Metadata struct {
	RecordCount            int // 2 + the entries of the package
	StandardDirectoryPerms int
	StandardFilePerms      int
	TotalUncompressedBytes uint64
	Version                int
}

func newMetadata(entries int, total uint64) Metadata {
	return Metadata{RecordCount: 2 + entries, StandardDirectoryPerms: stdDirPerms, StandardFilePerms: stdFilePerms,
		TotalUncompressedBytes: total, Version: 2}
}

// InitTransfer is the request that starts a transfer (the values Xcode
// sends, as go-ios and appium send them).
func InitTransfer(packageName string) map[string]any {
	return map[string]any{
		"InstallOptionsDictionary": map[string]any{
			"DisableDeltaTransfer": 1,
			"InstallDeltaTypeKey":  "InstallDeltaTypeSparseIPAFiles",
			"IsUserInitiated":      1,
			"PackageType":          "Customer",
			"PreferWifi":           1,
		},
		"InstallTransferredDirectory": 1,
		"MediaSubdir":                 "PublicStaging/" + packageName,
		"UserInitiatedTransfer":       0,
	}
}
