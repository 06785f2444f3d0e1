package main

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	strictEnv = true
	// The completion test runs this binary as iosmux.
	if os.Getenv("IOSMUX_TEST_AS_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// execIn runs a command line in-process under ctx (cancel it to stop a
// long-running command) and returns the command's error.
func execIn(ctx context.Context, stdout, stderr io.Writer, env map[string]string, args ...string) error {
	a := newApp(stdout, stderr, func(k string) string { return env[k] })
	_, err := a.execute(ctx, args)
	return err
}

// isUsage reports whether err is bad usage (exit status 2).
func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// testApp is an app writing to w with an empty environment.
func testApp(w io.Writer, env map[string]string) *app {
	return newApp(w, io.Discard, func(k string) string { return env[k] })
}
