package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// runChecked runs args in-process and fails the test when a non-zero exit
// printed nothing on stderr (nothing may fail silently).
func runChecked(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, func(k string) string { return env[k] })
	if code != 0 && strings.TrimSpace(errb.String()) == "" {
		t.Errorf("%q: exit %d with nothing on stderr", args, code)
	}
	return code, out.String(), errb.String()
}

// commands lists every visible command of the tree, by its words after
// "iosmux" (the root is the empty list).
func commands(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	walk(newRootCmd(testApp(io.Discard, nil)), func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		out = append(out, strings.Fields(c.CommandPath())[1:])
	})
	if len(out) < 15 {
		t.Fatalf("the tree has only %d commands: %v", len(out), out)
	}
	return out
}

func find(t *testing.T, path []string) *cobra.Command {
	t.Helper()
	root := newRootCmd(testApp(io.Discard, nil))
	c, rest, err := root.Find(path)
	if err != nil || len(rest) != 0 {
		t.Fatalf("find %v: %v %v", path, rest, err)
	}
	return c
}

// TestTree walks the whole tree: every command has a summary and an
// example, its --help exits 0 on stdout, every bad value of every flag with
// a fixed set of values exits 2 with one line naming the value and the
// allowed ones, and an unknown flag exits 2 naming it.
func TestTree(t *testing.T) {
	for _, path := range commands(t) {
		name := strings.Join(append([]string{"iosmux"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			c := find(t, path)
			if c.Short == "" || c.Example == "" {
				t.Errorf("summary %q, example %q: want both", c.Short, c.Example)
			}
			if c != c.Root() && (c.PersistentPreRun != nil || c.PersistentPreRunE != nil) {
				t.Error("a persistent pre-run below the root would skip the root's (logger set-up)")
			}
			code, out, errs := runChecked(t, nil, append(path, "--help")...)
			if code != 0 || !strings.Contains(out, "Usage:\n  "+name) || errs != "" {
				t.Errorf("--help: exit %d, stdout %q, stderr %q", code, firstLine([]byte(out)), errs)
			}
			code, _, errs = runChecked(t, nil, append(path, "--no-such-flag")...)
			if code != 2 || !strings.Contains(errs, "--no-such-flag") || !strings.Contains(errs, "see '"+name+" --help'") {
				t.Errorf("unknown flag: exit %d, stderr %q", code, errs)
			}
			flags := c.LocalFlags()
			if c == c.Root() {
				flags = c.PersistentFlags()
			}
			flags.VisitAll(func(f *pflag.Flag) {
				cv, ok := f.Value.(choicesValue)
				if !ok {
					return
				}
				code, _, errs := runChecked(t, nil, append(path, "--"+f.Name, "bogus-value")...)
				lines := strings.Split(strings.TrimSpace(errs), "\n")
				if code != 2 || len(lines) != 2 || !strings.Contains(lines[0], `"bogus-value"`) || !strings.Contains(lines[0], "--"+f.Name) {
					t.Errorf("--%s bogus-value: exit %d, stderr %q; want 2 and one line naming the flag and value", f.Name, code, errs)
					return
				}
				for _, want := range cv.Choices() {
					if !strings.Contains(lines[0], want) {
						t.Errorf("--%s bogus-value: %q does not list %q", f.Name, lines[0], want)
					}
				}
			})
		})
	}
}

// TestBadUsage: the cases a new user hit, each one line naming what is
// wrong and exit 2.
func TestBadUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"sim", "--profile", "16.0"}, []string{`--profile "16.0"`, "17.0", "27.2"}},
		{[]string{"sim", "--trust", "maybe"}, []string{`"maybe"`, "accept", "deny", "pending"}},
		{[]string{"sim", "--wifi"}, []string{"--wifi", "--ncm"}},
		{[]string{"sim", "--count", "0"}, []string{`--count "0"`, "from 1"}},
		{[]string{"sim", "--realism", "usb9"}, []string{`"usb9"`, "ideal", "usb2"}},
		{[]string{"tunneld", "--simulate-profile", "16.0"}, []string{`--simulate-profile "16.0"`}},
		{[]string{"tunneld", "--advertise", "both"}, []string{`"both"`, "device", "backend"}},
		{[]string{"tunneld", "--api", "pmd3,grpc"}, []string{`"grpc"`, "goios", "appium"}},
		{[]string{"tunneld", "--simulate", "-1"}, []string{"--simulate"}},
		{[]string{"start-tunnel", "--rsd", "127.0.0.1", "notaport"}, []string{`"notaport"`, "--rsd"}},
		{[]string{"start-tunnel", "--rsd", "::1"}, []string{"--rsd", "HOST PORT"}},
		{[]string{"start-tunnel", "--protocol", "udp"}, []string{`"udp"`, "tcp", "quic"}},
		{[]string{"start-tunnel", "-p", "udp"}, []string{`"udp"`, "tcp", "quic"}},
		{[]string{"start-tunnel", "--connection", "bluetooth"}, []string{`"bluetooth"`, "usbmux", "wifi"}},
		{[]string{"start-tunnel", "--connection", "usbmux", "--protocol", "quic"}, []string{"quic"}},
		{[]string{"start-tunnel", "--script-mode", "--json"}, []string{"--script-mode", "--json"}},
		{[]string{"start-tunnel", "--rsd", "::1", "58783", "--remotepairing", "::1", "1"}, []string{"--rsd", "--remotepairing"}},
		{[]string{"pair", "bogus"}, []string{`"bogus"`}},
		{[]string{"pair", "lsit"}, []string{`"lsit"`, "did you mean list"}},
		{[]string{"pair", "forget"}, []string{"ID"}},
		{[]string{"pair", "import"}, []string{"--go-ios"}},
		{[]string{"rsd-info"}, []string{"--rsd", "--tunnel", "--demo"}},
		{[]string{"rsd-info", "--rsd", "h", "1", "--tunnel", "U"}, []string{"--rsd", "--tunnel"}},
		{[]string{"backend"}, []string{"--rsd", "--tunnel", "--simulate"}},
		{[]string{"backend", "--simulate", "2"}, []string{`--simulate "2"`}},
		{[]string{"completion", "tcsh"}, []string{`"tcsh"`, "bash", "zsh", "fish"}},
		{[]string{"bogus"}, []string{`unknown command "bogus"`}},
		{[]string{"lsit"}, []string{"did you mean list"}},
		{[]string{"help", "bogus"}, []string{`"bogus"`}},
		{[]string{"--log-level", "loud", "version"}, []string{`"loud"`, "debug", "error"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errs := runChecked(t, nil, tt.args...)
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[1], "see 'iosmux") || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want 2, the error and \"see 'iosmux … --help'\"", code, out, errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("%q lacks %q", lines[0], w)
				}
			}
		})
	}
}

// TestGNUFlags: global flags after the command, flags after positional
// arguments, help on stdout.
func TestGNUFlags(t *testing.T) {
	if code, out, errs := runChecked(t, nil, "version", "--log-level", "debug", "--json"); code != 0 || !strings.Contains(out, `"version"`) {
		t.Errorf("global flag after the command: exit %d, %q %q", code, out, errs)
	}
	dir := t.TempDir()
	code, _, errs := runChecked(t, nil, "pair", "forget", "ID", "--pair-records", dir)
	if code != 1 || !strings.Contains(errs, "no pair record in "+dir) {
		t.Errorf("flag after the argument: exit %d, %q", code, errs)
	}
	for _, args := range [][]string{{"--help"}, {}, {"help"}, {"help", "pair", "list"}} {
		code, out, errs := runChecked(t, nil, args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errs != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, firstLine([]byte(out)), errs)
		}
	}
	if code, out, _ := runChecked(t, nil, "--version"); code != 0 || !strings.HasPrefix(out, "iosmux ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// TestOldSpellings: the spellings of the previous release still parse
// (hidden, deprecated ones with a warning), and the aliases of other tools.
func TestOldSpellings(t *testing.T) {
	// sim --state-dir is --simulate-state.
	dir := t.TempDir()
	out := &lockedBuffer{ready: make(chan struct{})}
	var errb lockedBuffer
	errb.ready = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- execIn(ctx, out, &errb, nil, "sim", "-json", "--state-dir", dir, "--control", "none")
	}()
	select {
	case <-out.ready:
	case err := <-done:
		t.Fatalf("sim exited: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out.mu.Lock()
	if !strings.Contains(out.buf.String(), filepath.Join(dir, "usbmuxd")) {
		t.Errorf("sim --state-dir %s: endpoints %s", dir, out.buf.String())
	}
	out.mu.Unlock()
	if s := errb.buf.String(); !strings.Contains(s, "deprecated flag") || !strings.Contains(s, "--simulate-state") {
		t.Errorf("no deprecation warning for sim --state-dir: %q", s)
	}

	for _, tt := range []struct {
		name string
		args []string
		want string // in the one error line: proves the spelling reached the flag
	}{
		{"backend --udid is --tunnel", []string{"backend", "--udid", "U", "--simulate"}, "exactly one of"},
		{"backend --rsd HOST:PORT", []string{"backend", "--rsd", "[fd00::1]:58783", "--simulate"}, "exactly one of"},
		{"backend --simulate=2", []string{"backend", "--simulate=2"}, `--simulate "2"`},
		{"--connection-type is --connection", []string{"start-tunnel", "--connection-type", "bluetooth"}, `--connection "bluetooth"`},
		{"-t is --connection", []string{"start-tunnel", "-t", "bluetooth"}, `--connection "bluetooth"`},
		{"single-dash long flag", []string{"start-tunnel", "-protocol", "udp"}, `--protocol "udp"`},
		{"sim --simulate-profile is --profile", []string{"sim", "--simulate-profile", "16.0"}, `--profile "16.0"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := runChecked(t, nil, tt.args...)
			if code != 2 || !strings.Contains(errs, tt.want) {
				t.Errorf("%q: exit %d, %q; want 2 with %q", tt.args, code, errs, tt.want)
			}
		})
	}
}

// TestDocumentedCommandLines parses every iosmux command line in the
// README, the Makefile, scripts/ and docs/ (without running it): a renamed
// flag fails here, not on a user's machine.
func TestDocumentedCommandLines(t *testing.T) {
	files := []string{filepath.Join("..", "..", "README.md"), filepath.Join("..", "..", "Makefile")}
	for _, g := range []string{"../../scripts/*.sh", "../../docs/*.md"} {
		m, _ := filepath.Glob(g)
		for _, f := range m {
			if !strings.HasSuffix(f, "docs/cli.md") { // generated from the examples, checked below
				files = append(files, f)
			}
		}
	}
	texts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f] = string(b)
	}
	walk(newRootCmd(testApp(io.Discard, nil)), func(c *cobra.Command) {
		texts[c.CommandPath()+" --help"] = c.Example
	})
	names := map[string]bool{}
	for _, p := range commands(t) {
		if len(p) > 0 {
			names[p[0]] = true
		}
	}
	n := 0
	for f, text := range texts {
		for _, m := range commandLine.FindAllStringSubmatch(text, -1) {
			args := strings.Fields(m[1])
			if len(args) == 0 || !names[args[0]] && !strings.HasPrefix(args[0], "-") {
				continue // prose
			}
			for i, a := range args {
				if strings.HasPrefix(a, "$") || strings.HasPrefix(a, "<") || regexp.MustCompile(`^[A-Z]+$`).MatchString(a) {
					args[i] = "1" // a shell variable or a placeholder (N, UDID)
				}
			}
			n++
			if err := parseOnly(args); err != nil {
				t.Errorf("%s: iosmux %s: %v", f, strings.Join(args, " "), err)
			}
		}
	}
	if n < 15 {
		t.Errorf("found only %d command lines", n)
	}
}

// commandLine finds "iosmux ARGS" in text, up to a comment, pipe,
// redirection or closing quote.
var commandLine = regexp.MustCompile("(?:^|[\\s(`$])(?:\\./bin/|/usr/local/bin/|\\$IOSMUX\\s+)?iosmux((?:[ \\t]+[^\\s#`|;&)>]+)+)")

// parseOnly parses args as run would, without running the command.
func parseOnly(args []string) error {
	a := testApp(io.Discard, nil)
	root := newRootCmd(a)
	args = a.normalizeArgs(root, args)
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	c.InitDefaultHelpFlag()
	c.InitDefaultVersionFlag()
	if err := c.ParseFlags(rest); err != nil {
		return flagError(c, err)
	}
	return c.ValidateArgs(c.Flags().Args())
}
