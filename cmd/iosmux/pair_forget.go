package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"
)

func newPairForgetCmd(a *app) *cobra.Command {
	var recordsDir string
	cmd := &cobra.Command{
		Use:     "forget ID",
		Short:   "delete a pair record",
		Long:    "Deletes the pair record of device ID (as 'pair list' shows it). The device keeps its side until it is reset or the host is removed there.",
		Example: "  iosmux pair forget 00008110-001A2B3C4D5E6F70\n  iosmux pair forget appletv --pair-records ./records",
		Args:    exactArgs(1, "the record's ID"),
		RunE:    func(cmd *cobra.Command, args []string) error { return runPairForget(a, args[0], recordsDir) },
	}
	addRecordsFlag(cmd, &recordsDir)
	return cmd
}

func runPairForget(a *app, id, recordsDir string) error {
	dir, err := pairRecordsDir(a, recordsDir)
	if err != nil {
		return err
	}
	err = pairingStore(a, dir).Delete(id)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("device %s: no pair record in %s", id, dir)
	}
	if err != nil {
		return fmt.Errorf("device %s: %w", id, err)
	}
	_, err = fmt.Fprintf(a.stdout, "Forgot %s\n", id)
	return err
}
