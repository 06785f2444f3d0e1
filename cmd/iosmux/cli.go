package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// usageError is bad command-line input: exit status 2, the message on one
// line followed by "see 'iosmux CMD --help'".
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// usageErr marks err as bad usage.
func usageErr(err error) error {
	if err == nil {
		return nil
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return err
	}
	return &usageError{err}
}

// usagef is usageErr(fmt.Errorf(...)).
func usagef(format string, args ...any) error { return usageErr(fmt.Errorf(format, args...)) }

// flagError turns pflag's parse errors into one line naming the flag and
// the value (and, for an unknown flag, the nearest known ones).
func flagError(cmd *cobra.Command, err error) error {
	var inv *pflag.InvalidValueError
	var missing *pflag.ValueRequiredError
	var unknown *pflag.NotExistError
	switch {
	case errors.As(err, &inv):
		return usagef("--%s %q: %v", inv.GetFlag().Name, inv.GetValue(), inv.Unwrap())
	case errors.As(err, &missing):
		f := missing.GetFlag()
		v := f.Value.Type()
		if name, _ := pflag.UnquoteUsage(f); name != "" {
			v = name
		}
		return usagef("--%s needs a value (%s)", f.Name, v)
	case errors.As(err, &unknown):
		name := unknown.GetSpecifiedName()
		msg := err.Error()
		if s := similarFlags(cmd, name); len(s) > 0 {
			msg += "; did you mean " + orList(s) + "?"
		}
		return usageErr(errors.New(msg))
	}
	return usageErr(err)
}

// similarFlags are the visible long flags of cmd close to name.
func similarFlags(cmd *cobra.Command, name string) []string {
	var out []string
	if len(name) < 2 {
		return nil
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.HasPrefix(f.Name, name) || strings.HasPrefix(name, f.Name) || levenshtein(f.Name, name) <= 2 {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// orList writes "a", "a or b", "a, b or c".
func orList(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// noArgs is the Args of a command that takes no positional arguments. A
// command with subcommands names the unknown one and suggests others.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasAvailableSubCommands() {
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + orList(s) + "?"
		}
		return usageErr(errors.New(msg))
	}
	return usagef("unexpected argument %q", args[0])
}

// exactArgs wants n positional arguments, named what in the message.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

// rangeArgs wants between lo and hi positional arguments (hi < 0: any
// number from lo), named what in the message.
func rangeArgs(lo, hi int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || hi >= 0 && len(args) > hi {
			return usagef("want %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

// groupCmd is a command that only holds subcommands: alone it prints its
// help, with an unknown subcommand it fails naming it.
func groupRun(cmd *cobra.Command, args []string) error {
	return cmd.Help()
}

// aliasFlag makes --name another spelling of --canonical on cmd: an older
// one kept for a release (deprecated: hidden, and a warning when used) or
// another tool's (pymobiledevice3's: listed in the help).
func aliasFlag(cmd *cobra.Command, name, canonical string, deprecated bool) {
	f := cmd.Flags().Lookup(canonical)
	if f == nil {
		panic("iosmux: alias of unknown flag --" + canonical)
	}
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	key := annotAliases
	if deprecated {
		key = annotDeprecated
	}
	f.Annotations[key] = append(f.Annotations[key], name)
	prev := cmd.Flags().GetNormalizeFunc()
	cmd.Flags().SetNormalizeFunc(func(fs *pflag.FlagSet, n string) pflag.NormalizedName {
		if n == name {
			return pflag.NormalizedName(canonical)
		}
		return prev(fs, n)
	})
}

// flagAliases lists the other spellings of f: visible ones, deprecated ones.
func flagAliases(f *pflag.Flag) (other, deprecated []string) {
	return f.Annotations[annotAliases], f.Annotations[annotDeprecated]
}

// normalizeArgs rewrites the spellings pflag cannot parse by itself into
// ones it can, before cobra sees them:
//   - a long flag with one dash (-json), as Go's flag package took them;
//   - a flag whose value is two words (--rsd HOST PORT) into --rsd=HOST PORT
//     (it stays one word when it already is HOST:PORT or [v6]:PORT);
//   - an optional count followed by a number (--simulate 2) into --simulate=2.
//
// The command is found first, so only its own flags are rewritten.
func (a *app) normalizeArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil {
		return args
	}
	fs := cmd.Flags()
	lookup := func(name string) *pflag.Flag {
		if f := fs.Lookup(name); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(name)
	}
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		s := args[i]
		if s == "--" {
			out = append(out, args[i:]...)
			break
		}
		if len(s) > 2 && s[0] == '-' && s[1] != '-' {
			name, _, _ := strings.Cut(s[1:], "=")
			if len(name) > 1 && lookup(name) != nil {
				s = "-" + s
			}
		}
		if !strings.HasPrefix(s, "--") || strings.Contains(s, "=") {
			out = append(out, s)
			continue
		}
		a.usedSpelling[s[2:]] = true
		f := lookup(s[2:])
		if f == nil {
			out = append(out, s)
			continue
		}
		switch v := f.Value.(type) {
		case *hostPortValue:
			if i+1 < len(args) && !v.oneWord(args[i+1]) && i+2 < len(args) && !strings.HasPrefix(args[i+2], "-") {
				out = append(out, s+"="+args[i+1]+" "+args[i+2])
				i += 2
				continue
			}
		case *countValue:
			if i+1 < len(args) && isDigits(strings.TrimPrefix(args[i+1], "-")) {
				out = append(out, s+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// warnDeprecated logs each deprecated spelling cmd was given.
func (a *app) warnDeprecated(cmd *cobra.Command) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		_, dep := flagAliases(f)
		for _, old := range dep {
			if f.Changed && a.usedSpelling[old] {
				a.log.Warn("deprecated flag: it goes away in the next release", "flag", "--"+old, "use", "--"+f.Name)
			}
		}
	})
}
