// Command iosmux owns the host side of talking to an iPhone on iOS 17+:
// pairing, tunnels, the tunneld HTTP API and the CoreDevice backend.
//
// It is the only package that reads the environment, installs the slog
// handler, handles signals and calls os.Exit. Each subcommand lives in its own
// file and registers itself in commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run receives the arguments after the
// subcommand name; it returns errUsage (possibly wrapped) for bad arguments.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, app *app, args []string) error
}

var commands = map[string]*command{}

// register adds a subcommand; called from init in each command file (the
// only work those inits do).
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("iosmux: duplicate command " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks bad command-line input: exit status 2, usage already printed.
var errUsage = errors.New("usage")

// app carries what every command shares: output streams, the logger and the
// environment lookups made once here.
type app struct {
	stdout, stderr io.Writer
	log            *slog.Logger
	getenv         func(string) string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	global := flag.NewFlagSet("iosmux", flag.ContinueOnError)
	global.SetOutput(stderr)
	logLevel := global.String("log-level", envOr(getenv, "IOSMUX_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env IOSMUX_LOG_LEVEL)")
	logFormat := global.String("log-format", envOr(getenv, "IOSMUX_LOG_FORMAT", "text"), "log format: text or json (env IOSMUX_LOG_FORMAT)")
	global.Usage = func() { usage(stderr, global) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr, global)
		return 2
	}
	if rest[0] == "help" {
		if len(rest) > 1 {
			if c, ok := commands[rest[1]]; ok {
				return run([]string{"--log-level", *logLevel, c.name, "-h"}, stdout, stderr, getenv)
			}
		}
		usage(stdout, global)
		return 0
	}
	c, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "iosmux: unknown command %q (see 'iosmux help')\n", rest[0])
		return 2
	}
	logger, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "iosmux: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{stdout: stdout, stderr: stderr, log: logger, getenv: getenv}
	if err := c.run(ctx, a, rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		fmt.Fprintf(stderr, "iosmux %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer, global *flag.FlagSet) {
	fmt.Fprintf(w, "usage: iosmux [global flags] <command> [flags]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nglobal flags:\n")
	global.SetOutput(w)
	global.PrintDefaults()
	fmt.Fprintf(w, "\nRun 'iosmux help <command>' for a command's flags.\n")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q: want text or json", format)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// newFlags returns a FlagSet for a subcommand whose -h prints the summary,
// the synopsis and the flags.
func newFlags(a *app, name, synopsis, help string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: iosmux %s %s\n", name, synopsis)
		if help != "" {
			fmt.Fprintf(a.stderr, "\n%s\n", strings.TrimSpace(help))
		}
		fmt.Fprintf(a.stderr, "\nflags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping parse failures to errUsage and -h to
// flag.ErrHelp (exit 0).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
