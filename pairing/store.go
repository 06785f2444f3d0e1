package pairing

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/iosmux/iosmux/internal/atomicfile"
)

// RecordDirName is pymobiledevice3's record folder under the home
// directory (remotepairing.md §8.1).
const RecordDirName = ".pymobiledevice3"

const (
	recordPrefix = "remote_"
	recordSuffix = ".plist"
	recordMode   = 0o600
)

// ErrBadIdentifier: a record identifier that cannot be a file name part.
var ErrBadIdentifier = errors.New("pairing: bad record identifier")

// RecordStore is a folder of pymobiledevice3 pair records, one file per
// device: remote_<identifier>.plist.
type RecordStore struct {
	Dir string
	// Owner, if set, owns the records and a folder Save creates: the
	// invoking user when running under sudo, as pymobiledevice3 chowns its
	// folder, so the user's own tools can read what root wrote.
	Owner *FileOwner
}

// FileOwner is a numeric owner for chown.
type FileOwner = atomicfile.Owner

// checkIdentifier rejects identifiers pymobiledevice3 could not parse back
// from the file name (no '.', remotepairing.md §8.1) or that would escape the folder.
func checkIdentifier(id string) error {
	if id == "" || len(id) > 255 || strings.ContainsAny(id, "./\\\x00") {
		return fmt.Errorf("%w %q", ErrBadIdentifier, id)
	}
	return nil
}

// Path returns the file of id's record.
func (s RecordStore) Path(id string) (string, error) {
	if err := checkIdentifier(id); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, recordPrefix+id+recordSuffix), nil
}

// Load reads id's record; a missing record is an error matching
// fs.ErrNotExist.
func (s RecordStore) Load(id string) (*Record, error) {
	p, err := s.Path(id)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	r, err := ParseRecord(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return r, nil
}

// Save writes id's record atomically with mode 0600 and returns its path
// (internal/atomicfile: a crash leaves either the old record or the new
// one). The folder is created (0700, owned by Owner) if missing.
func (s RecordStore) Save(id string, r *Record) (string, error) {
	p, err := s.Path(id)
	if err != nil {
		return "", err
	}
	return p, atomicfile.Write(p, r.Marshal(), recordMode, atomicfile.MkdirAll(0o700), atomicfile.WithOwner(s.Owner))
}

// StoredRecord is one entry of List.
type StoredRecord struct {
	ID     string
	Path   string
	Record *Record // nil when Err is set
	Err    error
}

// List returns the records of the folder sorted by identifier; unreadable
// records are listed with their error. A missing folder is an empty list.
func (s RecordStore) List() ([]StoredRecord, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []StoredRecord
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasPrefix(name, recordPrefix) || !strings.HasSuffix(name, recordSuffix) {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(name, recordPrefix), recordSuffix)
		if checkIdentifier(id) != nil {
			continue
		}
		sr := StoredRecord{ID: id, Path: filepath.Join(s.Dir, name)}
		sr.Record, sr.Err = s.Load(id)
		out = append(out, sr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Delete removes id's record; a missing record matches fs.ErrNotExist.
func (s RecordStore) Delete(id string) error {
	p, err := s.Path(id)
	if err != nil {
		return err
	}
	return os.Remove(p)
}
