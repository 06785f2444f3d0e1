package afc

import (
	"errors"
	"fmt"
	"io/fs"
)

// Status is the code of a STATUS reply (docs/protocols/afc.md §4).
type Status uint64

// Status codes. 24–29 and 34 and above are not defined on the wire.
const (
	StatusSuccess             Status = 0
	StatusUnknownError        Status = 1
	StatusOpHeaderInvalid     Status = 2
	StatusNoResources         Status = 3
	StatusReadError           Status = 4
	StatusWriteError          Status = 5
	StatusUnknownPacketType   Status = 6
	StatusInvalidArg          Status = 7
	StatusObjectNotFound      Status = 8
	StatusObjectIsDir         Status = 9
	StatusPermDenied          Status = 10
	StatusServiceNotConnected Status = 11
	StatusOpTimeout           Status = 12
	StatusTooMuchData         Status = 13
	StatusEndOfData           Status = 14
	StatusOpNotSupported      Status = 15
	StatusObjectExists        Status = 16
	StatusObjectBusy          Status = 17
	StatusNoSpaceLeft         Status = 18
	StatusOpWouldBlock        Status = 19
	StatusIOError             Status = 20
	StatusOpInterrupted       Status = 21
	StatusOpInProgress        Status = 22
	StatusInternalError       Status = 23
	StatusMuxError            Status = 30
	StatusNoMem               Status = 31
	StatusNotEnoughData       Status = 32
	StatusDirNotEmpty         Status = 33
)

var statusNames = map[Status]string{
	StatusSuccess: "success", StatusUnknownError: "unknown error", StatusOpHeaderInvalid: "invalid operation header",
	StatusNoResources: "no resources", StatusReadError: "read error", StatusWriteError: "write error",
	StatusUnknownPacketType: "unknown packet type", StatusInvalidArg: "invalid argument",
	StatusObjectNotFound: "no such file or directory", StatusObjectIsDir: "is a directory",
	StatusPermDenied: "permission denied", StatusServiceNotConnected: "service not connected",
	StatusOpTimeout: "operation timed out", StatusTooMuchData: "too much data", StatusEndOfData: "end of data",
	StatusOpNotSupported: "operation not supported", StatusObjectExists: "file exists",
	StatusObjectBusy: "object busy", StatusNoSpaceLeft: "no space left on device",
	StatusOpWouldBlock: "operation would block", StatusIOError: "input/output error",
	StatusOpInterrupted: "operation interrupted", StatusOpInProgress: "operation in progress",
	StatusInternalError: "internal error", StatusMuxError: "mux error", StatusNoMem: "out of memory",
	StatusNotEnoughData: "not enough data", StatusDirNotEmpty: "directory not empty",
}

func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("status %d", uint64(s))
}

// Error is a STATUS reply other than success: the operation, the path it
// was about (if any) and the device's code. It answers errors.Is for the
// fs sentinels that mean the same (fs.ErrNotExist, fs.ErrExist,
// fs.ErrPermission) and for ErrDirNotEmpty, ErrIsDir and ErrNotSupported.
type Error struct {
	Op     Opcode
	Path   string
	Status Status
}

func (e *Error) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("afc: %s %s: %s (%d)", e.Op, e.Path, e.Status, uint64(e.Status))
	}
	return fmt.Sprintf("afc: %s: %s (%d)", e.Op, e.Status, uint64(e.Status))
}

// Sentinels for conditions callers branch on that fs has no name for.
var (
	ErrDirNotEmpty  = errors.New("afc: directory not empty")
	ErrIsDir        = errors.New("afc: is a directory")
	ErrNotSupported = errors.New("afc: operation not supported by the device")
	ErrWouldBlock   = errors.New("afc: lock held elsewhere")
)

// Is maps status codes to sentinels. GET_FILE_INFO's "not found" may come
// as READ_ERROR (docs/protocols/afc.md §8, pmd3 maps both), so that one
// is not-exist too.
func (e *Error) Is(target error) bool {
	switch target {
	case fs.ErrNotExist:
		return e.Status == StatusObjectNotFound || e.Op == OpGetFileInfo && e.Status == StatusReadError
	case fs.ErrExist:
		return e.Status == StatusObjectExists
	case fs.ErrPermission:
		return e.Status == StatusPermDenied
	case ErrDirNotEmpty:
		return e.Status == StatusDirNotEmpty
	case ErrIsDir:
		return e.Status == StatusObjectIsDir
	case ErrNotSupported:
		return e.Status == StatusOpNotSupported || e.Status == StatusUnknownPacketType
	case ErrWouldBlock:
		return e.Status == StatusOpWouldBlock
	}
	return false
}
