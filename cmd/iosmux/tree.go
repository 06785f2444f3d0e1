package main

import (
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

var unsortedOnce sync.Once

// newRootCmd builds the whole command tree, in one place.
//
// To add a command: write `func newXxxCmd(a *app) *cobra.Command` in its own
// file (Use, Short, Long, Example, Args, RunE; flags through the helpers in
// commonflags.go, e.g. addUDIDFlag, addRSDTarget, addJSONFlag, enumFlag),
// then add one line to the AddCommand list below (a noun with subcommands,
// such as pair, builds its own children in its constructor). TestTree
// checks every command has a summary and an example and that its --help
// works; docs/cli.md is regenerated with `make docs`. A device command
// picks its device with a.findDevice (the picker) or rsdTarget.resolve
// (--rsd/--tunnel); a long wait says what it waits for with a.wait, and a
// transfer shows a bar with a.progressOut(asJSON).Bytes (package
// cmd/iosmux/internal/progress: nothing on a non-terminal or with --json).
func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "iosmux",
		Short: "the host side of an iPhone on iOS 17+: pairing, tunnels, tunneld, the CoreDevice backend",
		Long: `iosmux owns the host side of talking to an iPhone on iOS 17+, with no Python:
RemotePairing, CoreDeviceProxy and RemotePairing tunnels (kernel TUN or a
userspace stack), a drop-in for 'pymobiledevice3 remote tunneld' with
go-ios's and appium's APIs, the RemoteXPC backend macOS CoreDeviceService
connects to, and a simulated iPhone for trying all of it without one.

Flags go anywhere on the line, GNU style (--flag value, --flag=value).
Bad usage exits 2, a failure 1.`,
		Example: `  iosmux list
  iosmux pair --udid 00008110-001A2B3C4D5E6F70
  sudo iosmux tunneld
  iosmux rsd-info --tunnel 00008110-001A2B3C4D5E6F70`,
		Version:           versionString(),
		Args:              noArgs,
		RunE:              groupRun,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.setUp(cmd) },
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// The order below is the help's. cobra's switch is a package
	// variable: set it once, so trees built at the same time (tests run
	// commands side by side) do not race on it.
	unsortedOnce.Do(func() { cobra.EnableCommandSorting = false })
	root.SetFlagErrorFunc(flagError)
	root.SetVersionTemplate("{{.Version}}\n")
	pf := root.PersistentFlags()
	a.logLevel = envOr(a.getenv, "IOSMUX_LOG_LEVEL", "info")
	a.logFormat = envOr(a.getenv, "IOSMUX_LOG_FORMAT", "text")
	pf.Var(&enumValue{p: &a.logLevel, allowed: []string{"debug", "info", "warn", "error"}}, "log-level", "log level (env IOSMUX_LOG_LEVEL)")
	pf.Var(&enumValue{p: &a.logFormat, allowed: []string{"text", "json"}}, "log-format", "log format (env IOSMUX_LOG_FORMAT)")
	for _, name := range []string{"log-level", "log-format"} {
		allowed := pf.Lookup(name).Value.(*enumValue).allowed
		root.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return allowed, cobra.ShellCompDirectiveNoFileComp
		})
	}

	root.AddCommand(
		// Devices and pairing.
		newListCmd(a),
		newInfoCmd(a),
		newPairCmd(a),
		newLockdownCmd(a),
		newRSDInfoCmd(a),
		// Developer services.
		newAMFICmd(a),
		newMounterCmd(a),
		// Apps, files and processes.
		newAppsCmd(a),
		newAFCCmd(a),
		newProcessesCmd(a),
		newDebugserverCmd(a),
		// Tunnels and servers.
		newStartTunnelCmd(a),
		newTunneldCmd(a),
		newBackendCmd(a),
		newSimCmd(a),
		// Logs, reports and notifications.
		newSyslogCmd(a),
		newProcessesCmd(a),
		newNotifyCmd(a),
		newCrashCmd(a),
		// The program itself.
		newVersionCmd(a),
		newCompletionCmd(a),
		newDocsCmd(a),
	)
	root.SetHelpCommand(newHelpCmd(a))
	root.InitDefaultHelpCmd() // adds it to the tree now, for the docs and tests
	setUsageTemplate(root)
	walk(root, func(c *cobra.Command) {
		c.Long = strings.TrimSpace(c.Long)
		c.Flags().SortFlags = false
		c.DisableFlagsInUseLine = true
		c.SuggestionsMinimumDistance = 2
		if c.Args == nil {
			c.Args = noArgs
		}
	})
	return root
}

// walk calls fn on cmd and every command below it.
func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		walk(c, fn)
	}
}

// newHelpCmd is `iosmux help [command]`: the command's help on stdout, or
// a usage error naming an unknown one.
func newHelpCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "help [command]",
		Short:   "help about any command",
		Example: "  iosmux help\n  iosmux help pair list",
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			target, rest, err := root.Find(args)
			if err != nil || target == nil || len(rest) > 0 || (target == root && len(args) > 0) {
				name := strings.Join(args, " ")
				msg := "unknown help topic " + `"` + name + `"`
				if len(args) > 0 {
					if s := root.SuggestionsFor(args[0]); len(s) > 0 {
						msg += "; did you mean " + orList(s) + "?"
					}
				}
				return usagef("%s", msg)
			}
			return target.Help()
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			var out []string
			for _, c := range cmd.Root().Commands() {
				if c.IsAvailableCommand() {
					out = append(out, c.Name())
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
	}
}
