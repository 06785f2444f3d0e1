package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

func newCompletionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "print a shell completion script",
		Long: `Prints a script that completes iosmux's commands, flags and flag values in
bash, zsh or fish. Load it in the current shell, or install it where the
shell loads completions from.`,
		Example: `  source <(iosmux completion bash)
  iosmux completion bash > /etc/bash_completion.d/iosmux
  iosmux completion zsh > "${fpath[1]}/_iosmux"
  iosmux completion fish > ~/.config/fish/completions/iosmux.fish`,
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("want one shell: bash, zsh or fish")
			}
			switch args[0] {
			case "bash", "zsh", "fish":
				return nil
			}
			return usagef("shell %q: want bash, zsh or fish", args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(a.stdout, true)
			case "zsh":
				return root.GenZshCompletion(a.stdout)
			default:
				return root.GenFishCompletion(a.stdout, true)
			}
		},
	}
}

func newDocsCmd(a *app) *cobra.Command {
	docs := &cobra.Command{
		Use:   "docs",
		Short: "generate the manual: man pages or the Markdown reference",
		Long:  "Generates iosmux's reference documentation from the command tree itself.",
		Example: `  iosmux docs man /usr/local/share/man/man1
  iosmux docs markdown docs/cli.md`,
		RunE: groupRun,
	}
	docs.AddCommand(&cobra.Command{
		Use:     "man DIR",
		Short:   "write one man page per command (section 1) into DIR",
		Long:    "Writes iosmux.1, iosmux-pair.1, iosmux-pair-list.1, … into DIR (created if missing).",
		Example: "  iosmux docs man ./man && man ./man/iosmux-tunneld.1",
		Args:    exactArgs(1, "one folder"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			hdr := &doc.GenManHeader{Title: "IOSMUX", Section: "1", Source: "iosmux " + readBuildInfo().Version, Manual: "iosmux manual"}
			if err := doc.GenManTree(cmd.Root(), hdr, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(a.stdout, "man pages written to %s\n", args[0])
			return err
		},
	})
	docs.AddCommand(&cobra.Command{
		Use:   "markdown [FILE]",
		Short: "write the Markdown command reference (docs/cli.md) to FILE or stdout",
		Long: `Writes every command, its flags (with their other spellings) and every
environment variable iosmux reads, as Markdown: docs/cli.md in the
repository, which a test keeps current.`,
		Example: "  iosmux docs markdown docs/cli.md",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var b bytes.Buffer
			writeMarkdown(&b, a, cmd.Root())
			if len(args) == 0 {
				_, err := a.stdout.Write(b.Bytes())
				return err
			}
			return atomicfile.Write(args[0], b.Bytes(), 0o644)
		},
	})
	return docs
}

// writeMarkdown renders the reference: global flags, every command, every
// environment variable.
func writeMarkdown(w io.Writer, a *app, root *cobra.Command) {
	fmt.Fprintf(w, "# iosmux command reference\n\n")
	fmt.Fprintf(w, "Generated from the command tree (`iosmux docs markdown docs/cli.md`); a test fails when it is stale.\n")
	fmt.Fprintf(w, "Flags go anywhere on the line; bad usage exits 2, a failure 1. `iosmux help CMD` or `iosmux CMD --help` prints the same text.\n\n")
	fmt.Fprintf(w, "## Commands\n\n")
	walk(root, func(c *cobra.Command) {
		if c == root || !c.IsAvailableCommand() {
			return
		}
		fmt.Fprintf(w, "- [`%s`](#%s) — %s\n", c.CommandPath(), anchor(c.CommandPath()), c.Short)
	})
	fmt.Fprintf(w, "\n## Global flags\n\nAccepted by every command, before or after its name.\n\n```\n%s```\n", flagTable(root.PersistentFlags()))
	walk(root, func(c *cobra.Command) {
		if c == root || !c.IsAvailableCommand() {
			return
		}
		fmt.Fprintf(w, "\n## %s\n\n%s.\n\n```\n%s\n```\n", c.CommandPath(), capitalize(c.Short), c.UseLine())
		if c.Long != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Long))
		}
		if c.HasAvailableSubCommands() {
			fmt.Fprintf(w, "\nSubcommands:\n\n")
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					fmt.Fprintf(w, "- [`%s`](#%s) — %s\n", s.CommandPath(), anchor(s.CommandPath()), s.Short)
				}
			}
		}
		if c.Example != "" {
			fmt.Fprintf(w, "\nExamples:\n\n```sh\n%s\n```\n", strings.TrimRight(dedent(c.Example), "\n"))
		}
		if fl := c.LocalFlags(); fl.HasAvailableFlags() {
			fmt.Fprintf(w, "\nFlags:\n\n```\n%s```\n", flagTable(fl))
		}
		var spellings []string
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			other, dep := flagAliases(f)
			for _, n := range other {
				spellings = append(spellings, fmt.Sprintf("- `--%s` = `--%s`\n", n, f.Name))
			}
			for _, n := range dep {
				spellings = append(spellings, fmt.Sprintf("- `--%s` = `--%s` (deprecated: goes away in the next release)\n", n, f.Name))
			}
		})
		if len(spellings) > 0 {
			fmt.Fprintf(w, "\nOther spellings:\n\n%s", strings.Join(spellings, ""))
		}
	})
	fmt.Fprintf(w, "\n## Environment variables\n\n| variable | used for |\n|---|---|\n")
	for _, v := range envVars {
		fmt.Fprintf(w, "| `%s` | %s |\n", v.Name, v.Help)
	}
}

// readmeUsing is the command list of README.md's "Using it" section:
// each command's summary and its first example.
func readmeUsing(root *cobra.Command) string {
	var b strings.Builder
	walk(root, func(c *cobra.Command) {
		if c == root || !c.IsAvailableCommand() || c.Example == "" {
			return
		}
		ex := strings.TrimSpace(strings.SplitN(dedent(c.Example), "\n", 2)[0])
		fmt.Fprintf(&b, "# %s\n%s\n", c.Short, ex)
	})
	return b.String()
}

// Markers around the generated part of README.md.
const (
	readmeBegin = "<!-- iosmux commands: generated by TestCLIDoc -update -->\n```sh\n"
	readmeEnd   = "```\n<!-- end of iosmux commands -->\n"
)

func anchor(s string) string { return strings.ReplaceAll(strings.ToLower(s), " ", "-") }

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// dedent removes the two-space indent of cobra examples.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "  ")
	}
	return strings.Join(lines, "\n")
}
