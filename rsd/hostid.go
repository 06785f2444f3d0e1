package rsd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/xpc"
)

// HostUUIDFile is the file LoadOrCreateHostUUID keeps the host identity in.
const HostUUIDFile = "rsd-host-uuid"

// LoadOrCreateHostUUID returns the host's RSD identity stored in dir,
// creating it (a random v4 UUID, file mode 0600, written atomically) on
// first use. A file that exists but does not hold a UUID is an error, never
// silently replaced: a new identity makes iOS 27.2 close every advertised
// service port (rsd.md §3).
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
	// NoReplace, so that of two processes racing here the second keeps
	// the first one's identity instead of replacing it.
	err = atomicfile.Write(path, []byte(u.String()+"\n"), 0o600, atomicfile.MkdirAll(0o700), atomicfile.NoReplace())
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateHostUUID(dir)
	}
	if err != nil {
		return xpc.UUID{}, fmt.Errorf("rsd: host uuid: %w", err)
	}
	return u, nil
}
