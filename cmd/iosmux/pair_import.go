package main

import (
	"fmt"

	"github.com/iosmux/iosmux/pairing"
	"github.com/spf13/cobra"
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
	return pairing.RecordStore{Dir: dir, Owner: sudoOwner(a)}
}

func newPairImportCmd(a *app) *cobra.Command {
	var goios, recordsDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "import --go-ios DIR [UDID...]",
		Short:   "convert go-ios's pair records into pymobiledevice3 records",
		Long:    pairImportHelp,
		Example: "  iosmux pair import --go-ios ~/.go-ios\n  iosmux pair import --go-ios /var/lib/go-ios 00008110-001A2B3C4D5E6F70",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if goios == "" {
				return usagef("--go-ios DIR is required: go-ios's pair record folder")
			}
			return runPairImport(a, goios, recordsDir, asJSON, args)
		},
	}
	cmd.Flags().StringVar(&goios, "go-ios", "", "go-ios pair record `DIR` (its --pair-record-path)")
	addJSONFlag(cmd, &asJSON, "the imported records")
	addRecordsFlag(cmd, &recordsDir)
	return cmd
}

func runPairImport(a *app, goios, recordsDir string, asJSON bool, udids []string) error {
	dir, err := pairRecordsDir(a, recordsDir)
	if err != nil {
		return err
	}
	got, err := pairing.ImportGoIOS(goios, pairingStore(a, dir), udids)
	if err != nil {
		return err
	}
	if asJSON {
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
