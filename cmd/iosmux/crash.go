package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/crash"
	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const crashHelp = `
The device's crash reports (crashreportmover and crashreportcopymobile,
docs/protocols/crash.md). Every command first has the device move pending
reports into its crash folder (--no-flush skips it); none needs a developer
disk image.

` + serviceTargetHelp

func newCrashCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "crash",
		Short: "list, pull, clear and watch the device's crash reports",
		Long:  crashHelp,
		Example: `  iosmux crash ls
  iosmux crash pull ./reports
  iosmux crash watch ./reports --process Demo`,
		RunE: groupRun,
	}
	cmd.AddCommand(newCrashLsCmd(a), newCrashPullCmd(a), newCrashClearCmd(a), newCrashWatchCmd(a))
	return cmd
}

const noFlushHelp = "do not have the device move pending reports in first"

// crashCmd builds one crash subcommand on serviceCmd: run gets a client of
// crashreportcopymobile, pending reports flushed in first unless
// --no-flush.
func crashCmd(a *app, use, short, long, example string, timeout time.Duration, extra func(*cobra.Command),
	run func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener, c *crash.Client) error) *cobra.Command {
	var noFlush bool
	return serviceCmd(a, use, short, long, example, timeout, func(cmd *cobra.Command) {
		cmd.Flags().BoolVar(&noFlush, "no-flush", false, noFlushHelp)
		if extra != nil {
			extra(cmd)
		}
	}, func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
		c, err := crash.Open(ctx, dev, crash.Options{NoFlush: noFlush, Folder: afcFolder})
		if err != nil {
			return err
		}
		defer c.Close()
		return run(ctx, cmd, o, dev, c)
	})
}

func newCrashLsCmd(a *app) *cobra.Command {
	var depth int
	cmd := crashCmd(a, "ls [PATH]", "list the crash folder: path, size, modification time",
		`Lists the crash folder from PATH (default: all of it) down to --depth levels
(0: all), folders before their contents. Entries the device will not show
are skipped.`,
		"  iosmux crash ls\n  iosmux crash ls Retired --json\n  iosmux crash ls --depth 1", 2*time.Minute,
		func(cmd *cobra.Command) { cmd.Flags().IntVar(&depth, "depth", 0, "levels to descend (0: all)") },
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener, c *crash.Client) error {
			root := "/"
			if args := cmd.Flags().Args(); len(args) == 1 {
				root = args[0]
			}
			es, err := c.List(ctx, root, depth)
			if err != nil {
				return err
			}
			if o.asJSON {
				if es == nil {
					es = []crash.Entry{}
				}
				return writeJSON(a.stdout, es)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
			for _, e := range es {
				name := e.Path
				switch e.Type {
				case "dir":
					name += "/"
				case "link":
					name += " -> " + e.LinkTarget
				}
				fmt.Fprintf(tw, "%d\t  %s\t  %s\t\n", e.Size, e.ModTime.Local().Format("2006-01-02 15:04:05"), name)
			}
			return tw.Flush()
		})
	cmd.Args = rangeArgs(0, 1, "at most one PATH")
	return cmd
}

func newCrashPullCmd(a *app) *cobra.Command {
	var match string
	var erase bool
	cmd := crashCmd(a, "pull DIR [PATH]", "copy crash reports into DIR, keeping the folder structure and file times",
		`Copies every file under PATH (default: the whole folder) into DIR as
DIR/<path on the device>, each with the device's modification time and mode
0600, written whole or not at all. --match selects files by name; --erase
removes each file from the device once it is copied (what
idevicecrashreport does by default). A bar shows the bytes on a terminal.`,
		"  iosmux crash pull ./reports\n  iosmux crash pull ./reports --match '^Demo-.*\\.ips$' --erase\n  iosmux crash pull ./reports Retired --json",
		30*time.Minute, func(cmd *cobra.Command) {
			cmd.Flags().StringVarP(&match, "match", "m", "", "only files whose name matches this regular `EXPRESSION`")
			cmd.Flags().BoolVar(&erase, "erase", false, "remove each file from the device once copied")
		},
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener, c *crash.Client) error {
			var re *regexp.Regexp
			if match != "" {
				var err error
				if re, err = regexp.Compile(match); err != nil {
					return usagef("--match %q: %v", match, err)
				}
			}
			args := cmd.Flags().Args()
			root := "/"
			if len(args) == 2 {
				root = args[1]
			}
			bar := a.progressOut(o.asJSON).Bytes(-1, "pulling crash reports")
			st, err := c.Pull(ctx, root, args[0], crash.PullOptions{Match: re, Erase: erase, Progress: bar.Set,
				Pulled: func(e crash.Entry, local string) { a.log.Debug("crash: pulled", "path", e.Path, "to", local) }})
			bar.Done()
			if err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "dir": args[0], "files": st.Files, "bytes": st.Bytes, "erased": erase})
			}
			fmt.Fprintf(a.stdout, "%s: pulled %d files (%d bytes) into %s\n", dev.UDID(), st.Files, st.Bytes, args[0])
			return nil
		})
	cmd.Args = rangeArgs(1, 2, "DIR [PATH]")
	return cmd
}

func newCrashClearCmd(a *app) *cobra.Command {
	return crashCmd(a, "clear", "remove every crash report from the device",
		`Removes everything in the crash folder. The device recreates
com.apple.appstored right away; anything else left is an error.`,
		"  iosmux crash clear\n  iosmux crash clear --udid 00008110-001A2B3C4D5E6F70", 2*time.Minute, nil,
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener, c *crash.Client) error {
			if err := c.Clear(ctx); err != nil {
				return err
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "cleared": true})
			}
			fmt.Fprintf(a.stdout, "%s: crash reports cleared\n", dev.UDID())
			return nil
		})
}

func newCrashWatchCmd(a *app) *cobra.Command {
	var noFlush bool
	var interval time.Duration
	var processes []string
	cmd := streamCmd(a, "watch [DIR]", "print (and pull into DIR) crash reports as the device saves them",
		`Watches for new crash reports until interrupted: the device announces each
report it saves in its log (os_trace_relay), and the report is read at once;
the folder is also listed every --interval for reports saved unannounced.
Each report is printed as a line (name, bug type, process, time; a JSON
object with --json) and, with DIR, copied into it like crash pull does.
Reports already on the device are not reported.`,
		"  iosmux crash watch\n  iosmux crash watch ./reports --process Demo --json", "each report (one object per line)",
		func(cmd *cobra.Command) {
			cmd.Flags().BoolVar(&noFlush, "no-flush", false, noFlushHelp)
			cmd.Flags().StringArrayVarP(&processes, "process", "p", nil, "only reports of this process `NAME` (repeatable)")
			cmd.Flags().DurationVar(&interval, "interval", 10*time.Second, "how often to list the folder for reports saved unannounced")
		},
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) (func(context.Context) error, error) {
			c, err := crash.Open(ctx, dev, crash.Options{NoFlush: noFlush, Folder: afcFolder})
			if err != nil {
				return nil, err
			}
			dir := cmd.Flags().Arg(0)
			return func(ctx context.Context) error {
				defer c.Close()
				ctx, stop := context.WithCancel(ctx)
				defer stop()
				saved := make(chan string, 64)
				ready := func() {
					go func() {
						// The fast path; without it listing alone finds reports.
						if err := announceSaved(ctx, dev, saved); err != nil && ctx.Err() == nil {
							a.log.Warn("crash watch: the device's log stream ended; finding reports by listing only", "udid", dev.UDID(), "err", err)
						}
					}()
					a.log.Info("watching for new crash reports", "udid", dev.UDID())
				}
				return c.Watch(ctx, crash.WatchOptions{Saved: saved, Interval: interval, Ready: ready}, func(r crash.Report) error {
					if len(processes) > 0 && !slices.Contains(processes, r.Header.Name) {
						return nil
					}
					local := ""
					if dir != "" {
						var err error
						if local, err = saveReport(dir, r); err != nil {
							return err
						}
					}
					return printReport(a, o.asJSON, dev.UDID(), r, local)
				})
			}, nil
		})
	cmd.Args = rangeArgs(0, 1, "at most one DIR")
	return cmd
}

// afcFolder is the crash folder's AFC client: crashreportcopymobile speaks
// AFC (services/afc), which services/crash does not import.
func afcFolder(c net.Conn) crash.Folder { return afc.NewClient(c, nil) }

// announceSaved streams the device's os_trace log and sends the name of
// every report the device says it saved.
func announceSaved(ctx context.Context, dev reach.Opener, saved chan<- string) error {
	oc, err := ostrace.Open(ctx, dev)
	if err != nil {
		return err
	}
	defer oc.Close()
	if err := oc.StartActivity(ctx, ostrace.DefaultActivity); err != nil {
		return err
	}
	return oc.Run(ctx, func(r *ostrace.Record) error {
		if name, ok := crash.SavedReport(r.Filename, r.ImageName, r.Message); ok {
			select {
			case saved <- name:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		return nil
	})
}

// saveReport writes r under dir at its device path, with its time.
func saveReport(dir string, r crash.Report) (string, error) {
	local, err := crash.LocalPath(dir, r.Path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return "", err
	}
	if err := atomicfile.Write(local, r.Data, 0o600); err != nil {
		return "", err
	}
	if !r.ModTime.IsZero() {
		os.Chtimes(local, r.ModTime, r.ModTime)
	}
	return local, nil
}

func printReport(a *app, asJSON bool, udid string, r crash.Report, local string) error {
	if asJSON {
		return jsonLine(a.stdout, map[string]any{"udid": udid, "path": r.Path, "size": r.Size, "mtime": r.ModTime,
			"bugType": r.Header.BugType, "kind": r.Header.Kind(), "process": r.Header.Name, "bundleID": r.Header.BundleID,
			"timestamp": r.Header.Timestamp, "incidentID": r.Header.IncidentID, "file": local})
	}
	line := fmt.Sprintf("%s\t%s %s\t%s\t%s", r.Path, r.Header.Kind(), r.Header.BugType, r.Header.Name, r.Header.Timestamp)
	if local != "" {
		line += "\t→ " + local
	}
	_, err := fmt.Fprintln(a.stdout, line)
	return err
}
