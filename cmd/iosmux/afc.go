package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/cmd/iosmux/internal/progress"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/housearrest"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/spf13/cobra"
)

const afcHelp = `
Files on the device (AFC, docs/protocols/afc.md): the media folder (DCIM,
Downloads, PublicStaging, …), or with --app BUNDLEID an app's data container
through house_arrest (docs/protocols/housearrest.md): the whole container for
apps installed with a development profile, else its Documents folder
(--documents asks for that one directly). Device paths are relative to that
root, with or without a leading /.

` + serviceTargetHelp

func newAFCCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "afc",
		Short: "files: ls, stat, pull, push, rm, mkdir, mv",
		Long:  afcHelp,
		Example: `  iosmux afc ls /DCIM
  iosmux afc push photos/ /Downloads
  iosmux afc pull /Documents ./backup --app com.example.myapp`,
		RunE: groupRun,
	}
	cmd.AddCommand(newAFCLsCmd(a), newAFCStatCmd(a), newAFCPullCmd(a), newAFCPushCmd(a), newAFCRmCmd(a), newAFCMkdirCmd(a), newAFCMvCmd(a))
	return cmd
}

type afcTarget struct {
	app       string
	documents bool
}

// afcCmd is an afc subcommand: the device flags plus --app/--documents,
// and an AFC client (on the media folder or the app's container) for run.
func afcCmd(a *app, c *cobra.Command, timeout time.Duration, run func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error) *cobra.Command {
	return afcCmdMore(a, c, timeout, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener, _ func() (*afc.Client, error)) error {
		return run(ctx, args, o, c, dev)
	})
}

// afcCmdMore is afcCmd for commands that may open more connections to the
// same root (more, whose clients the command closes).
func afcCmdMore(a *app, c *cobra.Command, timeout time.Duration, run func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener, more func() (*afc.Client, error)) error) *cobra.Command {
	at := &afcTarget{}
	c.PreRunE = func(*cobra.Command, []string) error {
		if at.documents && at.app == "" {
			return usagef("--documents needs --app BUNDLEID")
		}
		return nil
	}
	cmd := devCmd(a, c, timeout, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, dev reach.Opener) error {
		conn, err := openFiles(ctx, dev, at)
		if err != nil {
			return err
		}
		c := afc.NewClient(conn, nil)
		defer c.Close()
		more := func() (*afc.Client, error) {
			conn, err := openFiles(ctx, dev, at)
			if err != nil {
				return nil, err
			}
			return afc.NewClient(conn, nil), nil
		}
		return run(ctx, args, o, c, dev, more)
	})
	cmd.Flags().StringVar(&at.app, "app", "", "an app's data container (house_arrest) instead of the media folder: its `BUNDLEID`")
	cmd.Flags().BoolVar(&at.documents, "documents", false, "with --app: only the app's Documents folder (apps that share files)")
	return cmd
}

// openFiles opens AFC on the media folder, or house_arrest on an app: its
// container, falling back to Documents as go-ios does.
func openFiles(ctx context.Context, dev reach.Opener, t *afcTarget) (net.Conn, error) {
	switch {
	case t.app == "":
		return dev.Open(ctx, reach.AFC)
	case t.documents:
		return housearrest.Open(ctx, dev, t.app, true)
	}
	conn, _, err := housearrest.OpenAuto(ctx, dev, t.app)
	return conn, err
}

// maxArgs allows up to n positional arguments, named what in the message.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// fileView is a device path in --json output.
type fileView struct {
	Path       string    `json:"path"`
	Type       string    `json:"type"` // S_IFREG, S_IFDIR, S_IFLNK, …
	Size       int64     `json:"size"`
	Links      int64     `json:"links"`
	ModTime    time.Time `json:"modTime"`
	BirthTime  time.Time `json:"birthTime"`
	LinkTarget string    `json:"linkTarget,omitempty"`
}

func viewFile(p string, fi afc.FileInfo) fileView {
	return fileView{Path: p, Type: fi.Type, Size: fi.Size, Links: fi.Links, ModTime: fi.ModTime, BirthTime: fi.BirthTime, LinkTarget: fi.LinkTarget}
}

func newAFCLsCmd(a *app) *cobra.Command {
	var long bool
	cmd := afcCmd(a, &cobra.Command{
		Use:     "ls [PATH]",
		Short:   "list a folder",
		Long:    "Lists a folder's entries (default /); -l adds type, size and modification time.",
		Example: "  iosmux afc ls\n  iosmux afc ls -l /DCIM\n  iosmux afc ls /Documents --app com.example.myapp --json",
		Args:    maxArgs(1, "at most one path"),
	}, time.Minute, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error {
		p := "/"
		if len(args) == 1 {
			p = args[0]
		}
		names, err := c.ReadDir(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		if !long && !o.asJSON {
			for _, n := range names {
				fmt.Fprintln(a.stdout, n)
			}
			return nil
		}
		views := make([]fileView, len(names))
		for i, n := range names {
			fi, err := c.Stat(ctx, path.Join(p, n))
			if err != nil {
				return fmt.Errorf("%s: %w", dev.UDID(), err)
			}
			views[i] = viewFile(path.Join(p, n), fi)
		}
		if o.asJSON {
			return writeJSON(a.stdout, views)
		}
		tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
		for i, v := range views {
			name := names[i]
			if v.LinkTarget != "" {
				name += " -> " + v.LinkTarget
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", v.Type, v.Size, v.ModTime.Local().Format("2006-01-02 15:04"), name)
		}
		return tw.Flush()
	})
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show type, size and modification time")
	return cmd
}

func newAFCStatCmd(a *app) *cobra.Command {
	return afcCmd(a, &cobra.Command{
		Use:     "stat PATH",
		Short:   "describe a path",
		Long:    "Describes a path without following a final symbolic link: type, size, links, times, link target.",
		Example: "  iosmux afc stat /DCIM\n  iosmux afc stat /Documents/db.sqlite --app com.example.myapp --json",
		Args:    exactArgs(1, "a device path"),
	}, time.Minute, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error {
		fi, err := c.Stat(ctx, args[0])
		if err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		v := viewFile(args[0], fi)
		if o.asJSON {
			return writeJSON(a.stdout, v)
		}
		tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "path\t%s\ntype\t%s\nsize\t%d\nlinks\t%d\nmodified\t%s\ncreated\t%s\n", v.Path, v.Type, v.Size, v.Links,
			v.ModTime.Local().Format(time.RFC3339), v.BirthTime.Local().Format(time.RFC3339))
		if v.LinkTarget != "" {
			fmt.Fprintf(tw, "target\t%s\n", v.LinkTarget)
		}
		return tw.Flush()
	})
}

// transferBar draws an afc transfer's progress: bytes of the total, and
// the files done.
func transferBar(out progress.Out, verb string) (func(afc.Progress), func()) {
	var bar *progress.Bar
	return func(p afc.Progress) {
			if bar == nil {
				bar = out.Bytes(p.TotalBytes, verb)
			}
			bar.Describe(fmt.Sprintf("%s %d/%d files", verb, p.Files, p.TotalFiles))
			bar.Set(p.Bytes, p.TotalBytes)
		}, func() {
			bar.Done()
		}
}

func transferResult(a *app, o *serviceOptions, dev reach.Opener, verb, from, to string, st afc.Stats, took time.Duration) error {
	if o.asJSON {
		return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "from": from, "to": to, "files": st.Files, "dirs": st.Dirs,
			"links": st.Links, "bytes": st.Bytes, "seconds": took.Seconds()})
	}
	rate := ""
	if s := took.Seconds(); s > 0 {
		rate = fmt.Sprintf(", %.1f MB/s", float64(st.Bytes)/s/1e6)
	}
	fmt.Fprintf(a.stdout, "%s: %s %d files (%d bytes) in %.1fs%s\n", dev.UDID(), verb, st.Files, st.Bytes, took.Seconds(), rate)
	return nil
}

// defaultConnections is measured in docs/perf.md: the device serves each
// connection's requests one after another, so a second connection lets it
// work on two at once.
const defaultConnections = 2

// extraClients opens n-1 more connections for a transfer.
func extraClients(n int, more func() (*afc.Client, error)) ([]*afc.Client, func(), error) {
	var out []*afc.Client
	closeAll := func() {
		for _, c := range out {
			c.Close()
		}
	}
	for range n - 1 {
		c, err := more()
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		out = append(out, c)
	}
	return out, closeAll, nil
}

func newAFCPullCmd(a *app) *cobra.Command {
	return transferCmd(a, &cobra.Command{
		Use:   "pull REMOTE [LOCAL]",
		Short: "copy a device file or folder here",
		Long: `Copies a device file, or a folder with everything below it, to LOCAL (default:
the current folder). Into an existing folder it goes under its own name.`,
		Example: "  iosmux afc pull /DCIM/100APPLE ./photos\n  iosmux afc pull /Documents ./docs --app com.example.myapp",
		Args: func(cmd *cobra.Command, args []string) error {
			return between(args, 1, 2, "a device path and a local path")
		},
	}, ".", "pulling", "pulled", func(ctx context.Context, c *afc.Client, src, dst string, cfg afc.TransferConfig) (afc.Stats, error) {
		return c.Pull(ctx, src, dst, cfg)
	})
}

func newAFCPushCmd(a *app) *cobra.Command {
	return transferCmd(a, &cobra.Command{
		Use:   "push LOCAL [REMOTE]",
		Short: "copy a local file or folder to the device",
		Long: `Copies a local file, or a folder with everything below it, to REMOTE on the
device (default: /Downloads). Into an existing folder it goes under its own
name.`,
		Example: "  iosmux afc push movie.mp4 /Downloads\n  iosmux afc push fixtures/ /Documents --app com.example.myapp",
		Args: func(cmd *cobra.Command, args []string) error {
			return between(args, 1, 2, "a local path and a device path")
		},
	}, "/Downloads", "pushing", "pushed", func(ctx context.Context, c *afc.Client, src, dst string, cfg afc.TransferConfig) (afc.Stats, error) {
		if _, err := os.Lstat(src); err != nil {
			return afc.Stats{}, err
		}
		return c.Push(ctx, src, dst, cfg)
	})
}

// transferCmd is pull or push: SRC [DST] (DST defaults to def), over
// --connections connections, with a byte bar.
func transferCmd(a *app, c *cobra.Command, def, doing, done string, move func(ctx context.Context, c *afc.Client, src, dst string, cfg afc.TransferConfig) (afc.Stats, error)) *cobra.Command {
	var conns int
	cmd := afcCmdMore(a, c, 24*time.Hour, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener, more func() (*afc.Client, error)) error {
		dst := def
		if len(args) == 2 {
			dst = args[1]
		}
		extra, closeExtra, err := extraClients(conns, more)
		if err != nil {
			return err
		}
		defer closeExtra()
		cb, finish := transferBar(a.progressOut(o.asJSON), doing)
		start := time.Now()
		st, err := move(ctx, c, args[0], dst, afc.TransferConfig{Progress: cb, Extra: extra})
		finish()
		if err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		return transferResult(a, o, dev, done, args[0], dst, st, time.Since(start))
	})
	intFlag(cmd, &conns, "connections", defaultConnections, 1, 16, "connections to the device at once (files, and segments of large files, spread over them)")
	return cmd
}

func between(args []string, lo, hi int, what string) error {
	if len(args) < lo || len(args) > hi {
		return usagef("want %s, got %d argument(s)", what, len(args))
	}
	return nil
}

func newAFCRmCmd(a *app) *cobra.Command {
	var recursive bool
	cmd := afcCmd(a, &cobra.Command{
		Use:     "rm PATH...",
		Short:   "remove files or folders",
		Long:    "Removes files, links and empty folders; -r removes folders with everything in them.",
		Example: "  iosmux afc rm /Downloads/old.mp4\n  iosmux afc rm -r /Documents/cache --app com.example.myapp",
		Args: func(cmd *cobra.Command, args []string) error {
			return between(args, 1, 1<<20, "at least one device path")
		},
	}, 10*time.Minute, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error {
		for _, p := range args {
			var err error
			if recursive {
				err = c.RemoveAll(ctx, p)
			} else {
				err = c.Remove(ctx, p)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", dev.UDID(), err)
			}
		}
		if o.asJSON {
			return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "removed": args})
		}
		return nil
	})
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove folders and everything in them")
	return cmd
}

func newAFCMkdirCmd(a *app) *cobra.Command {
	return afcCmd(a, &cobra.Command{
		Use:     "mkdir PATH...",
		Short:   "make folders (and their parents)",
		Long:    "Makes folders, with any missing parents; an existing folder is fine.",
		Example: "  iosmux afc mkdir /Downloads/a/b",
		Args: func(cmd *cobra.Command, args []string) error {
			return between(args, 1, 1<<20, "at least one device path")
		},
	}, time.Minute, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error {
		for _, p := range args {
			if err := c.Mkdir(ctx, p); err != nil {
				return fmt.Errorf("%s: %w", dev.UDID(), err)
			}
		}
		if o.asJSON {
			return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "made": args})
		}
		return nil
	})
}

func newAFCMvCmd(a *app) *cobra.Command {
	return afcCmd(a, &cobra.Command{
		Use:     "mv FROM TO",
		Short:   "move or rename",
		Long:    "Moves or renames a path on the device; into an existing folder it goes under its own name.",
		Example: "  iosmux afc mv /Downloads/a.txt /Downloads/b.txt",
		Args:    exactArgs(2, "FROM and TO"),
	}, time.Minute, func(ctx context.Context, args []string, o *serviceOptions, c *afc.Client, dev reach.Opener) error {
		to := args[1]
		if fi, err := c.Stat(ctx, to); err == nil && fi.IsDir() {
			to = path.Join(to, path.Base(path.Clean("/"+args[0])))
		}
		if err := c.Rename(ctx, args[0], to); err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		if o.asJSON {
			return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "from": args[0], "to": to})
		}
		return nil
	})
}

func isDir(p string) bool {
	fi, err := os.Stat(filepath.Clean(p))
	return err == nil && fi.IsDir()
}
