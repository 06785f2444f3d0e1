package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/iosmux/iosmux/internal/atomicfile"
	"github.com/iosmux/iosmux/services/ostrace"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/services/syslog"
	"github.com/spf13/cobra"
)

const syslogHelp = `
Streams the device's log (syslog_relay, docs/protocols/syslog.md) until
interrupted. It needs no developer disk image. Lines are decoded (vis
escapes) and printed as the device wrote them, coloured on a terminal, or
as JSON lines with --json (time, device, process, image, pid, level,
message). The device sends every line; --process, --pid, --level and
--match select on this host.`

type syslogOptions struct {
	noColor   bool
	processes []string
	pids      []int
	match     string
	level     string
}

func newSyslogCmd(a *app) *cobra.Command {
	var so syslogOptions
	cmd := streamCmd(a, "syslog", "stream the device's log, filtered by process, pid, level or pattern", syslogHelp,
		`  iosmux syslog
  iosmux syslog --process SpringBoard --level error
  iosmux syslog --udid 00008110-001A2B3C4D5E6F70 --match 'crash|fault' --json
  iosmux syslog --tunnel 00008110-001A2B3C4D5E6F70 --pid 58`, "each line",
		func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.StringArrayVarP(&so.processes, "process", "p", nil, "only lines of this process `NAME` (repeatable)")
			f.IntSliceVar(&so.pids, "pid", nil, "only lines of this process `ID` (repeatable)")
			f.StringVarP(&so.match, "match", "m", "", "only lines matching this regular `EXPRESSION` (Go syntax, whole line)")
			f.StringVar(&so.level, "level", "", "only lines at least this severe: debug, info, notice, warning, error, fault, critical, alert, emergency")
			f.BoolVar(&so.noColor, "no-color", false, "no colours, even on a terminal")
		},
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) (func(context.Context) error, error) {
			f, err := so.filter()
			if err != nil {
				return nil, err
			}
			conn, err := dev.Open(ctx, reach.SyslogRelay)
			if err != nil {
				return nil, err
			}
			format := syslog.Plain
			switch {
			case o.asJSON:
				format = syslog.JSON
			case !so.noColor && a.terminal(a.stdout):
				format = syslog.Color
			}
			return func(ctx context.Context) error {
				c := syslog.NewClient(conn, 0)
				defer c.Close()
				a.log.Debug("syslog: streaming", "udid", dev.UDID())
				_, err := syslog.Copy(ctx, c, f, syslog.NewPrinter(a.stdout, format, nil))
				if errors.Is(err, syslog.ErrClosed) && ctx.Err() == nil {
					return fmt.Errorf("%s: %w (did it reboot or go away?)", dev.UDID(), err)
				}
				return err
			}, nil
		})
	// Bad filters are usage errors, before the device is reached.
	cmd.PreRunE = func(*cobra.Command, []string) error { _, err := so.filter(); return err }
	cmd.AddCommand(newSyslogCollectCmd(a))
	return cmd
}

func (o *syslogOptions) filter() (*syslog.Filter, error) {
	f := &syslog.Filter{Processes: o.processes, PIDs: o.pids}
	if o.match != "" {
		re, err := regexp.Compile(o.match)
		if err != nil {
			return nil, usagef("--match %q: %v", o.match, err)
		}
		f.Match = re
	}
	if o.level != "" {
		l, err := syslog.ParseLevel(o.level)
		if err != nil {
			return nil, usageErr(err)
		}
		f.MinLevel = l
	}
	return f, nil
}

const syslogCollectHelp = `
Saves the device's log archive (os_trace_relay's CreateArchive,
docs/protocols/ostrace.md): a tar of its log store, which macOS's 'log'
tool reads once unpacked into a folder named NAME.logarchive. The file is
written whole or not at all (streamed to a temporary file beside it, then
renamed), with mode 0600; a spinner counts the bytes on a terminal.`

func newSyslogCollectCmd(a *app) *cobra.Command {
	var age, size int64
	var since time.Duration
	cmd := serviceCmd(a, "collect FILE", "save the device's log archive (a .logarchive tarball) to FILE", syslogCollectHelp,
		"  iosmux syslog collect device-logs.tar\n  iosmux syslog collect --since 1h --udid 00008110-001A2B3C4D5E6F70 logs.tar",
		10*time.Minute, func(cmd *cobra.Command) {
			f := cmd.Flags()
			f.Int64Var(&age, "age", 0, "only the last `DAYS` days (the device's default without it)")
			f.Int64Var(&size, "size", 0, "at most about `BYTES` bytes")
			f.DurationVar(&since, "since", 0, "only entries of the last `DURATION` (e.g. 1h)")
		},
		func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
			file := cmd.Flags().Arg(0)
			c, err := ostrace.Open(ctx, dev)
			if err != nil {
				return err
			}
			defer c.Close()
			req := ostrace.ArchiveRequest{AgeLimit: age, SizeLimit: size}
			if since > 0 {
				req.StartTime = time.Now().Add(-since)
			}
			bar := a.progressOut(o.asJSON).Bytes(-1, "log archive")
			var n int64
			err = atomicfile.WriteFunc(file, 0o600, func(w io.Writer) error {
				var err error
				n, err = c.CreateArchive(ctx, w, req, func(n int64) { bar.Set(n, -1) })
				return err
			})
			bar.Done()
			if err != nil {
				return fmt.Errorf("%s: %w", dev.UDID(), err)
			}
			if o.asJSON {
				return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "file": file, "bytes": n})
			}
			fmt.Fprintf(a.stdout, "%s: saved %d bytes of logs to %s\n", dev.UDID(), n, file)
			return nil
		})
	cmd.Args = exactArgs(1, "FILE")
	return cmd
}
