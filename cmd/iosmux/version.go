package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

func init() {
	register(&command{name: "version", summary: "print the iosmux version", run: runVersion})
}

func runVersion(ctx context.Context, a *app, args []string) error {
	fs := newFlags(a, "version", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	v := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		v = bi.Main.Version
	}
	_, err := fmt.Fprintf(a.stdout, "iosmux %s\n", v)
	return err
}
