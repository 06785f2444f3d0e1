package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/iosmux/iosmux/cmd/iosmux/internal/progress"
	"github.com/iosmux/iosmux/services/afc"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"github.com/iosmux/iosmux/services/zipconduit"
	"github.com/spf13/cobra"
)

const appsHelp = `
Apps on the device: list them, show one, install a .ipa or a .app folder,
uninstall (installation_proxy and the streaming zip conduit,
docs/protocols/instproxy.md, docs/protocols/zipconduit.md).

` + serviceTargetHelp

func newAppsCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "apps: list, info, install, uninstall",
		Long:  appsHelp,
		Example: `  iosmux apps list
  iosmux apps install MyApp.ipa --udid 00008110-001A2B3C4D5E6F70
  iosmux apps uninstall com.example.myapp --tunnel 00008110-001A2B3C4D5E6F70`,
		RunE: groupRun,
	}
	cmd.AddCommand(newAppsListCmd(a), newAppsInfoCmd(a), newAppsInstallCmd(a), newAppsUninstallCmd(a), newAppsLaunchCmd(a))
	return cmd
}

// devCmd is a command on one device, built by serviceCmd from c (its
// Use, Short, Long, Example, Args and PreRunE); run gets the positional
// arguments too.
func devCmd(a *app, c *cobra.Command, timeout time.Duration, run func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, dev reach.Opener) error) *cobra.Command {
	return serviceCmd(a, c.Use, c.Short, strings.TrimSpace(c.Long), c.Example, timeout, func(cmd *cobra.Command) {
		cmd.Args, cmd.PreRunE = c.Args, c.PreRunE
	}, func(ctx context.Context, cmd *cobra.Command, o *serviceOptions, dev reach.Opener) error {
		return run(ctx, cmd, cmd.Flags().Args(), o, dev)
	})
}

func newAppsListCmd(a *app) *cobra.Command {
	var typ string
	var attrs []string
	cmd := devCmd(a, &cobra.Command{
		Use:   "list",
		Short: "list installed apps",
		Long: `Lists installed apps (installation_proxy Browse): bundle id, version (build), name.
--attrs picks the keys of each app dictionary to print (with --json: those keys
only, as the device sent them).`,
		Example: "  iosmux apps list\n  iosmux apps list --type all --json\n  iosmux apps list --attrs CFBundleIdentifier,Path --json",
	}, time.Minute, func(ctx context.Context, cmd *cobra.Command, _ []string, o *serviceOptions, dev reach.Opener) error {
		c, err := instproxy.Open(ctx, dev)
		if err != nil {
			return err
		}
		defer c.Close()
		opts := instproxy.BrowseOptions{Type: map[string]string{"user": instproxy.TypeUser, "system": instproxy.TypeSystem, "all": instproxy.TypeAny}[typ], Attributes: attrs}
		apps, err := c.Browse(ctx, opts, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		sort.Slice(apps, func(i, j int) bool { return apps[i].BundleID() < apps[j].BundleID() })
		if o.asJSON {
			if len(attrs) > 0 {
				return writeJSON(a.stdout, apps)
			}
			out := make([]appView, len(apps))
			for i, ap := range apps {
				out[i] = viewApp(ap)
			}
			return writeJSON(a.stdout, out)
		}
		tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
		if len(attrs) > 0 {
			fmt.Fprintln(tw, strings.Join(attrs, "\t"))
			for _, ap := range apps {
				vals := make([]string, len(attrs))
				for i, k := range attrs {
					vals[i] = fmt.Sprint(ap[k])
				}
				fmt.Fprintln(tw, strings.Join(vals, "\t"))
			}
			return tw.Flush()
		}
		fmt.Fprintln(tw, "BUNDLE ID\tVERSION\tNAME\tTYPE")
		for _, ap := range apps {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ap.BundleID(), versionText(ap.ShortVersion(), ap.Version()), ap.Name(), ap.Type())
		}
		return tw.Flush()
	})
	enumFlag(cmd, &typ, "type", "", "user", []string{"user", "system", "all"}, "which apps: user (installed by you), system, or all")
	cmd.Flags().StringSliceVar(&attrs, "attrs", nil, "app dictionary `KEYS` to print, comma-separated (e.g. CFBundleIdentifier,Path)")
	return cmd
}

func versionText(short, build string) string {
	switch {
	case short == "":
		return build
	case build == "" || build == short:
		return short
	}
	return short + " (" + build + ")"
}

// appView is an app in --json output.
type appView struct {
	BundleID     string `json:"bundleID"`
	Name         string `json:"name"`
	Version      string `json:"version"`
	ShortVersion string `json:"shortVersion"`
	Type         string `json:"type"`
	Path         string `json:"path,omitempty"`
	FileSharing  bool   `json:"fileSharing"`
}

func viewApp(ap instproxy.App) appView {
	return appView{BundleID: ap.BundleID(), Name: ap.Name(), Version: ap.Version(), ShortVersion: ap.ShortVersion(),
		Type: ap.Type(), Path: ap.Path(), FileSharing: ap.FileSharing()}
}

func newAppsInfoCmd(a *app) *cobra.Command {
	return devCmd(a, &cobra.Command{
		Use:     "info BUNDLEID",
		Short:   "show one installed app",
		Long:    "Shows one installed app's dictionary (installation_proxy Lookup): every key the device reports.",
		Example: "  iosmux apps info com.example.myapp\n  iosmux apps info com.apple.mobilesafari --json",
		Args:    exactArgs(1, "a bundle id"),
	}, time.Minute, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, dev reach.Opener) error {
		c, err := instproxy.Open(ctx, dev)
		if err != nil {
			return err
		}
		defer c.Close()
		res, err := c.Lookup(ctx, []string{args[0]}, instproxy.LookupOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", dev.UDID(), err)
		}
		ap, ok := res[args[0]]
		if !ok {
			return fmt.Errorf("%s: %s is not installed (see 'iosmux apps list --type all')", dev.UDID(), args[0])
		}
		if o.asJSON {
			return writeJSON(a.stdout, ap)
		}
		keys := make([]string, 0, len(ap))
		for k := range ap {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%v\n", k, ap[k])
		}
		return tw.Flush()
	})
}

// Install paths. The default is the one docs/perf.md measured faster
// against the simulated device.
const (
	viaZipConduit = "zipconduit"
	viaInstProxy  = "instproxy"
	defaultVia    = viaZipConduit
)

func newAppsInstallCmd(a *app) *cobra.Command {
	var via string
	cmd := devCmd(a, &cobra.Command{
		Use:   "install PATH",
		Short: "install (or upgrade) a .ipa or a .app folder",
		Long: `Installs a .ipa, or a .app folder, replacing an installed app of the same bundle
id (its data is kept). --via zipconduit streams the package through the
streaming zip conduit, which unpacks as it arrives (Xcode's and go-ios's way);
--via instproxy copies it to PublicStaging through AFC and has
installation_proxy install it from there (pymobiledevice3's and
ideviceinstaller's way; also for packages with files of 4 GiB or more, and
.app folders). The default is the faster one (docs/perf.md).`,
		Example: "  iosmux apps install MyApp.ipa\n  iosmux apps install build/MyApp.app --via instproxy --json",
		Args:    exactArgs(1, "the path of a .ipa or .app folder"),
	}, 30*time.Minute, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, dev reach.Opener) error {
		out := a.progressOut(o.asJSON)
		path := args[0]
		name, version, short, err := installApp(ctx, out, dev, path, via)
		if err != nil {
			return err
		}
		if o.asJSON {
			return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "bundleID": name, "version": version, "shortVersion": short, "via": via})
		}
		fmt.Fprintf(a.stdout, "%s: installed %s %s\n", dev.UDID(), name, versionText(short, version))
		return nil
	})
	enumFlag(cmd, &via, "via", "", defaultVia, []string{viaZipConduit, viaInstProxy}, "install path: zipconduit (stream) or instproxy (stage through AFC, then install)")
	return cmd
}

// installApp installs path through the chosen service with a byte bar for
// the transfer and the device's stage on the spinner after it.
func installApp(ctx context.Context, out progress.Out, dev reach.Opener, path, via string) (id, version, short string, err error) {
	var bar *progress.Bar
	stage := func(s string, pct int) {
		if bar != nil {
			bar.Done()
		}
		bar = out.Wait(fmt.Sprintf("installing: %s %d%%", s, pct))
	}
	bytes := func(done, total int64) {
		if bar == nil {
			bar = out.Bytes(total, "sending "+path)
		}
		bar.Set(done, total)
	}
	defer func() { bar.Done() }()
	if via == viaInstProxy || isDir(path) {
		conn, err := dev.Open(ctx, reach.AFC)
		if err != nil {
			return "", "", "", err
		}
		stager := afc.NewClient(conn, nil)
		defer stager.Close()
		in, err := instproxy.InstallLocal(ctx, dev, stager, path, instproxy.InstallOptions{}, func(p instproxy.InstallProgress) {
			switch p.Step {
			case instproxy.StepUpload:
				bytes(p.Bytes, p.Total)
			case instproxy.StepInstall:
				stage(p.Status, p.Percent)
			}
		})
		return in.BundleID, in.Version, in.ShortVersion, err
	}
	in, err := zipconduit.Install(ctx, dev, path, zipconduit.SendConfig{Progress: func(p zipconduit.SendProgress) {
		switch p.Step {
		case zipconduit.StepStream:
			bytes(p.Bytes, p.Total)
		case zipconduit.StepInstall:
			stage(p.Status, p.Percent)
		}
	}})
	return in.BundleID, in.Version, in.ShortVersion, err
}

func newAppsUninstallCmd(a *app) *cobra.Command {
	return devCmd(a, &cobra.Command{
		Use:     "uninstall BUNDLEID",
		Short:   "remove an installed app and its data",
		Long:    "Removes an app, its bundle and its data container (installation_proxy Uninstall).",
		Example: "  iosmux apps uninstall com.example.myapp",
		Args:    exactArgs(1, "a bundle id"),
	}, 5*time.Minute, func(ctx context.Context, cmd *cobra.Command, args []string, o *serviceOptions, dev reach.Opener) error {
		bar := a.wait("the device to remove "+args[0], o.asJSON)
		err := instproxy.Uninstall(ctx, dev, args[0], func(p instproxy.Progress) { bar.Describe("uninstalling: " + p.Status) })
		bar.Done()
		if err != nil {
			return err
		}
		if o.asJSON {
			return writeJSON(a.stdout, map[string]any{"udid": dev.UDID(), "bundleID": args[0], "uninstalled": true})
		}
		fmt.Fprintf(a.stdout, "%s: uninstalled %s\n", dev.UDID(), args[0])
		return nil
	})
}
