package rsd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/iosmux/iosmux/xpc"
)

// HostUUIDFile is the file LoadOrCreateHostUUID keeps the host identity in.
const HostUUIDFile = "rsd-host-uuid"

// LoadOrCreateHostUUID returns the host's RSD identity stored in dir,
// creating it (a random v4 UUID, file mode 0600, written atomically) on
// first use. A file that exists but does not hold a UUID is an error, never
// silently replaced: a new identity makes iOS 27.2 close every advertised
// service port (spec §4.2).
func LoadOrCreateHostUUID(dir string) (xpc.UUID, error) {
	path := filepath.Join(dir, HostUUIDFile)
	b, err := os.ReadFile(path)
	if err == nil {
		u, err := xpc.ParseUUID(strings.TrimSpace(string(b)))
		if err != nil || u.IsZero() {
			return xpc.UUID{}, fmt.Errorf("rsd: host uuid file %s is corrupt; remove it to create a new identity", path)
		}
		return u, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
	}
	u, err := xpc.NewRandomUUID(nil)
	if err != nil {
		return xpc.UUID{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
	}
	tmp, err := os.CreateTemp(dir, HostUUIDFile+".tmp*")
	if err != nil {
		return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(u.String() + "\n")
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
	}
	// Link rather than rename, so that of two processes racing here the
	// second keeps the first one's identity instead of replacing it.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadOrCreateHostUUID(dir)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
		}
	}
	return u, nil
}
