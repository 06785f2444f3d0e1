// Command iosmux owns the host side of talking to an iPhone on iOS 17+:
// pairing, tunnels, the tunneld HTTP API and the CoreDevice backend.
//
// It is the only package that reads the environment, installs the slog
// handler, handles signals and calls os.Exit. The command tree is built in
// one place, tree.go; each command's constructor lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/iosmux/iosmux/discovery"
	"github.com/iosmux/iosmux/establish"
	"github.com/spf13/cobra"
)

// app carries what every command shares: output streams, the logger and the
// environment lookups made once here.
type app struct {
	stdout, stderr io.Writer
	stdin          io.Reader
	log            *slog.Logger
	// getenv reads only the variables declared in env.go (others panic in
	// tests, so the list in docs/cli.md stays complete).
	getenv func(string) string
	// terminal reports whether a stream is a terminal: progress bars and the
	// device picker appear only there.
	terminal func(any) bool
	// argv0 is how the user ran us ("iosmux", "./bin/iosmux"), for the
	// commands we print for them to paste.
	argv0 string

	// Global flags.
	logLevel, logFormat string

	// usedSpelling holds the long flag names as typed (for the deprecation
	// warnings).
	usedSpelling map[string]bool
	// args is the command line as given (tunneld -d runs it again).
	args []string
	// establish brings every tunnel up: start-tunnel's, tunneld's and the
	// backend's simulated device's (establish.Establish; tests watch it).
	establish func(context.Context, discovery.Event, establish.Options) (*establish.Tunnel, error)
}

func main() {
	argv0 := "iosmux"
	if len(os.Args) > 0 && strings.ContainsRune(os.Args[0], '/') && !strings.HasPrefix(os.Args[0], "/") {
		argv0 = os.Args[0] // ./bin/iosmux: what the user typed
	}
	a := newApp(os.Stdout, os.Stderr, os.Getenv)
	a.argv0 = argv0
	os.Exit(a.main(os.Args[1:]))
}

// run runs one command line in-process, as main does: the entry point of the
// tests. It returns the exit status: 0, 1 for a failure, 2 for bad usage.
func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return newApp(stdout, stderr, getenv).main(args)
}

func newApp(stdout, stderr io.Writer, getenv func(string) string) *app {
	return &app{
		stdout: stdout, stderr: stderr, stdin: os.Stdin,
		log:          slog.New(slog.DiscardHandler),
		getenv:       declaredEnv(getenv),
		terminal:     isTerminal,
		argv0:        "iosmux",
		usedSpelling: map[string]bool{},
		establish:    establish.Establish,
	}
}

// main runs args until SIGINT/SIGTERM and reports the outcome.
func (a *app) main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a.args = args
	cmd, err := a.execute(ctx, args)
	return a.report(cmd, err)
}

// execute builds the tree and runs args through it; cmd is the command the
// arguments named (the root when none).
func (a *app) execute(ctx context.Context, args []string) (*cobra.Command, error) {
	root := newRootCmd(a)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	args = a.normalizeArgs(root, args)
	root.SetArgs(args)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetIn(a.stdin)
	return root.ExecuteContextC(ctx)
}

// report prints err as one line (plus where to read more for bad usage) and
// returns the exit status.
func (a *app) report(cmd *cobra.Command, err error) int {
	if err == nil {
		return 0
	}
	name := "iosmux"
	if cmd != nil {
		name = cmd.CommandPath()
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(a.stderr, "%s: %v\n", name, ue.err)
		fmt.Fprintf(a.stderr, "see '%s --help'\n", name)
		return 2
	}
	fmt.Fprintf(a.stderr, "%s: %v\n", name, err)
	return 1
}

// setUp runs before every command: the logger from the global flags.
func (a *app) setUp(cmd *cobra.Command) error {
	l, err := newLogger(a.stderr, a.logLevel, a.logFormat)
	if err != nil {
		return err
	}
	a.log = l
	a.warnDeprecated(cmd)
	return nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr(fmt.Errorf("log level %q (--log-level or IOSMUX_LOG_LEVEL): want debug, info, warn or error", level))
	}
	opts := &slog.HandlerOptions{Level: l, ReplaceAttr: oneLine}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr(fmt.Errorf("log format %q (--log-format or IOSMUX_LOG_FORMAT): want text or json", format))
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// isTerminal reports whether s is a character device (a terminal).
func isTerminal(s any) bool {
	f, ok := s.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
