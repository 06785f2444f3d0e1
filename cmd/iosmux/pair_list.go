package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// pairListEntry is one record in 'pair list --json'; no key material.
type pairListEntry struct {
	Identifier     string `json:"identifier"`
	Path           string `json:"path"`
	HostIdentifier string `json:"host_identifier,omitempty"`
	PeerUDID       string `json:"peer_udid,omitempty"`
	PeerName       string `json:"peer_name,omitempty"`
	PeerModel      string `json:"peer_model,omitempty"`
	UnlockKey      bool   `json:"remote_unlock_key"`
	Error          string `json:"error,omitempty"`
}

func newPairListCmd(a *app) *cobra.Command {
	var recordsDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "list the RemotePairing records (pymobiledevice3's format)",
		Long:    "Lists the RemotePairing records in the record folder: identifier, device, whether it holds a remote unlock key, path. No key material is printed.",
		Example: "  iosmux pair list\n  iosmux pair list --json --pair-records ./records",
		RunE:    func(cmd *cobra.Command, args []string) error { return runPairList(a, recordsDir, asJSON) },
	}
	addJSONFlag(cmd, &asJSON, "the records")
	addRecordsFlag(cmd, &recordsDir)
	return cmd
}

func runPairList(a *app, recordsDir string, asJSON bool) error {
	dir, err := pairRecordsDir(a, recordsDir)
	if err != nil {
		return err
	}
	store := pairingStore(a, dir)
	recs, err := store.List()
	if err != nil {
		return fmt.Errorf("pair records in %s: %w", dir, err)
	}
	out := make([]pairListEntry, 0, len(recs))
	for _, r := range recs {
		e := pairListEntry{Identifier: r.ID, Path: r.Path}
		if r.Err != nil {
			e.Error = r.Err.Error()
		} else {
			e.HostIdentifier, e.PeerUDID, e.PeerName, e.PeerModel = r.Record.HostIdentifier, r.Record.PeerUDID, r.Record.PeerName, r.Record.PeerModel
			e.UnlockKey = r.Record.RemoteUnlockHostKey != ""
		}
		out = append(out, e)
	}
	if asJSON {
		return writeJSON(a.stdout, out)
	}
	if len(out) == 0 {
		_, err := fmt.Fprintf(a.stdout, "No pair records in %s\n", dir)
		return err
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "IDENTIFIER\tDEVICE\tUNLOCK KEY\tPATH\n")
	for _, e := range out {
		dev := e.PeerName
		if e.PeerModel != "" {
			dev += " (" + e.PeerModel + ")"
		}
		if e.Error != "" {
			dev = "unreadable: " + e.Error
		}
		unlock := "no"
		if e.UnlockKey {
			unlock = "yes"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Identifier, dev, unlock, e.Path)
	}
	return w.Flush()
}
