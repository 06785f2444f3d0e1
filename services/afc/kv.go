package afc

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"time"
)

// KV is a key/value reply (GET_FILE_INFO, GET_DEVINFO, GET_CON_INFO):
// alternating NUL-terminated keys and values, in the device's order
// (docs/protocols/afc.md §6).
type KV []KeyValue

// KeyValue is one pair of a KV.
type KeyValue struct{ Key, Value string }

// Get returns the value of key.
func (kv KV) Get(key string) (string, bool) {
	for _, p := range kv {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// Append appends the encoding.
func (kv KV) Append(b []byte) []byte {
	for _, p := range kv {
		b = appendPath(appendPath(b, p.Key), p.Value)
	}
	return b
}

// maxKVPairs bounds a key/value reply (a stat answer has about eight).
const maxKVPairs = 1024

var errKV = errors.New("afc: malformed key/value reply")

// ParseKV decodes a key/value data part: every string NUL-terminated
// (the last NUL may be missing), an even number of strings.
func ParseKV(b []byte) (KV, error) {
	var out KV
	for len(b) > 0 {
		if len(out) == maxKVPairs {
			return nil, fmt.Errorf("%w: more than %d pairs", errKV, maxKVPairs)
		}
		k, rest := cutString(b)
		if rest == nil {
			return nil, fmt.Errorf("%w: key %q without a value", errKV, k)
		}
		v, rest2 := cutString(rest)
		out = append(out, KeyValue{k, v})
		b = rest2
	}
	return out, nil
}

// parseNames decodes a READ_DIR reply: NUL-terminated names.
func parseNames(b []byte) []string {
	var out []string
	for len(b) > 0 {
		var s string
		s, b = cutString(b)
		out = append(out, s)
	}
	return out
}

// File types of st_ifmt.
const (
	TypeRegular = "S_IFREG"
	TypeDir     = "S_IFDIR"
	TypeSymlink = "S_IFLNK"
	TypeChar    = "S_IFCHR"
	TypeBlock   = "S_IFBLK"
	TypeFIFO    = "S_IFIFO"
	TypeSocket  = "S_IFSOCK"
)

// FileInfo is a GET_FILE_INFO answer.
type FileInfo struct {
	Size      int64
	Blocks    int64
	Links     int64
	Type      string // st_ifmt: TypeRegular, TypeDir, TypeSymlink, …
	ModTime   time.Time
	BirthTime time.Time
	// LinkTarget is a symbolic link's target, as stored.
	LinkTarget string
	// Raw is the reply as sent, every key.
	Raw KV
}

// IsDir reports whether the path is a directory.
func (fi FileInfo) IsDir() bool { return fi.Type == TypeDir }

// IsSymlink reports whether the path is a symbolic link.
func (fi FileInfo) IsSymlink() bool { return fi.Type == TypeSymlink }

// Mode is the fs.FileMode type bits for Type.
func (fi FileInfo) Mode() fs.FileMode {
	switch fi.Type {
	case TypeDir:
		return fs.ModeDir
	case TypeSymlink:
		return fs.ModeSymlink
	case TypeChar:
		return fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		return fs.ModeDevice
	case TypeFIFO:
		return fs.ModeNamedPipe
	case TypeSocket:
		return fs.ModeSocket
	}
	return 0
}

// Link-target keys: pmd3 and appium read LinkTarget, idevice
// st_link_target, go-ios st_linktarget (docs/protocols/afc.md §6).
var linkTargetKeys = []string{"LinkTarget", "st_link_target", "st_linktarget"}

// ParseFileInfo decodes a GET_FILE_INFO data part. Numbers that do not
// parse are an error; missing keys stay zero.
func ParseFileInfo(b []byte) (FileInfo, error) {
	kv, err := ParseKV(b)
	if err != nil {
		return FileInfo{}, err
	}
	fi := FileInfo{Raw: kv}
	num := func(key string, dst *int64) error {
		v, ok := kv.Get(key)
		if !ok {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s = %q", errKV, key, v)
		}
		*dst = n
		return nil
	}
	var mtime, btime int64
	for _, f := range []struct {
		k string
		d *int64
	}{{"st_size", &fi.Size}, {"st_blocks", &fi.Blocks}, {"st_nlink", &fi.Links}, {"st_mtime", &mtime}, {"st_birthtime", &btime}} {
		if err := num(f.k, f.d); err != nil {
			return FileInfo{}, err
		}
	}
	fi.Type, _ = kv.Get("st_ifmt")
	if mtime != 0 {
		fi.ModTime = time.Unix(0, mtime)
	}
	if btime != 0 {
		fi.BirthTime = time.Unix(0, btime)
	}
	for _, k := range linkTargetKeys {
		if v, ok := kv.Get(k); ok {
			fi.LinkTarget = v
			break
		}
	}
	return fi, nil
}

// DeviceInfo is a GET_DEVINFO answer.
type DeviceInfo struct {
	Model      string
	TotalBytes uint64
	FreeBytes  uint64
	BlockSize  uint64
	Raw        KV
}

// ParseDeviceInfo decodes a GET_DEVINFO data part; the four keys idevice
// requires must be there.
func ParseDeviceInfo(b []byte) (DeviceInfo, error) {
	kv, err := ParseKV(b)
	if err != nil {
		return DeviceInfo{}, err
	}
	di := DeviceInfo{Raw: kv}
	var ok bool
	if di.Model, ok = kv.Get("Model"); !ok {
		return DeviceInfo{}, fmt.Errorf("%w: no Model", errKV)
	}
	for _, f := range []struct {
		k string
		d *uint64
	}{{"FSTotalBytes", &di.TotalBytes}, {"FSFreeBytes", &di.FreeBytes}, {"FSBlockSize", &di.BlockSize}} {
		v, ok := kv.Get(f.k)
		if !ok {
			return DeviceInfo{}, fmt.Errorf("%w: no %s", errKV, f.k)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return DeviceInfo{}, fmt.Errorf("%w: %s = %q", errKV, f.k, v)
		}
		*f.d = n
	}
	return di, nil
}

// KV is the reply's encoding, in the order idevice's tests use.
func (di DeviceInfo) KV() KV {
	return KV{{"Model", di.Model}, {"FSTotalBytes", strconv.FormatUint(di.TotalBytes, 10)},
		{"FSFreeBytes", strconv.FormatUint(di.FreeBytes, 10)}, {"FSBlockSize", strconv.FormatUint(di.BlockSize, 10)}}
}
