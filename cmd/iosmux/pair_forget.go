package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
)

func runPairForget(ctx context.Context, a *app, args []string) error {
	flags := newFlags(a, "pair forget", "ID [--pair-records DIR]", "Deletes the pair record of device ID (as 'pair list' shows it). The device keeps its side until it is reset or the host is removed there.")
	recordsDir := addRecordsFlag(flags)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return errUsage
	}
	id := flags.Arg(0)
	dir, err := pairRecordsDir(a, *recordsDir)
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
