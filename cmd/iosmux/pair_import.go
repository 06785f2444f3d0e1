package main

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/iosmux/iosmux/pairing"
)

const pairImportHelp = `
Converts go-ios's RemotePairing records (its --pair-record-path folder:
selfIdentity.plist and peers/*.plist) into pymobiledevice3 records that
present go-ios's identity, so devices paired by go-ios verify with iosmux.
go-ios does not record which devices it paired; name them as UDID arguments
when DIR has no peers/ entries.`

// pairingStore opens the record folder; under sudo, records it writes
// belong to the invoking user, as pymobiledevice3's do.
func pairingStore(a *app, dir string) pairing.RecordStore {
	s := pairing.RecordStore{Dir: dir}
	uid, err1 := strconv.Atoi(a.getenv("SUDO_UID"))
	gid, err2 := strconv.Atoi(a.getenv("SUDO_GID"))
	if err1 == nil && err2 == nil && os.Geteuid() == 0 {
		s.Owner = &pairing.FileOwner{UID: uid, GID: gid}
	}
	return s
}

func runPairImport(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "pair import", "--go-ios DIR [--pair-records DIR] [--json] [UDID...]", pairImportHelp)
	goios := fs.String("go-ios", "", "go-ios pair record folder")
	asJSON := fs.Bool("json", false, "print the imported records as JSON")
	recordsDir := addRecordsFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *goios == "" {
		fs.Usage()
		return errUsage
	}
	dir, err := pairRecordsDir(a, *recordsDir)
	if err != nil {
		return err
	}
	got, err := pairing.ImportGoIOS(*goios, pairingStore(a, dir), fs.Args())
	if err != nil {
		return err
	}
	if *asJSON {
		type entry struct {
			Identifier string `json:"identifier"`
			Path       string `json:"path"`
		}
		out := make([]entry, len(got))
		for i, g := range got {
			out[i] = entry{g.ID, g.Path}
		}
		return writeJSON(a.stdout, out)
	}
	for _, g := range got {
		fmt.Fprintf(a.stdout, "Imported %s -> %s\n", g.ID, g.Path)
	}
	return nil
}
