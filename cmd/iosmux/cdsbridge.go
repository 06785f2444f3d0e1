package main

import (
	"path/filepath"

	"github.com/iosmux/iosmux/backend"
	"github.com/iosmux/iosmux/dylib"
	"github.com/spf13/cobra"
)

// The bridge to iosmux's dylib inside macOS CoreDeviceService (inject/,
// docs/xcode.md), for the backend and tunneld's --advertise backend: one
// set of flags, spelled the same in both.

const cdsBridgeHelp = `--cds-bridge connects to iosmux's dylib inside macOS CoreDeviceService
(inject/; set-up in docs/xcode.md): it tells the dylib about the device
and answers the few Xcode actions iosmux can answer truthfully from the
device's real state (pairing, model, OS, Developer Mode, DDI). The dylib
listens on --cds-socket, one socket per CoreDeviceService process, on the
Mac itself: run this on the Mac (or the macOS VM) with Xcode. iosmux
refuses a dylib running in a CoreDeviceService build nobody has vouched
for (none has been verified yet): the first connection logs the build
and the --cds-build value that allows it; --accept-unknown-builds allows
any build (a test VM only).`

// cdsOptions are the bridge's flags.
type cdsOptions struct {
	on, acceptUnknown bool
	glob, name        string
	builds            []string
}

func addCDSFlags(cmd *cobra.Command, o *cdsOptions) {
	f := cmd.Flags()
	f.BoolVar(&o.on, "cds-bridge", false, "serve iosmux's dylib inside macOS CoreDeviceService: attach the device and answer Xcode's actions from its real state")
	f.StringVar(&o.glob, "cds-socket", backend.DefaultSocketGlob, "with --cds-bridge: the dylib's sockets, a `GLOB`")
	f.StringArrayVar(&o.builds, "cds-build", nil, "with --cds-bridge: allow a dylib in this CoreDeviceService `BUILD`: three image UUIDs, CoreDevice,CoreDeviceUtilities,Mercury, as the refusal logs them (repeatable)")
	f.BoolVar(&o.acceptUnknown, "accept-unknown-builds", false, "with --cds-bridge: allow a dylib in any CoreDeviceService build (logged; a test VM only)")
	f.StringVar(&o.name, "cds-name", "", "with --cds-bridge: the `NAME` Xcode shows for the device (default: the device's own name)")
}

// config checks the flags and returns the bridge's configuration (the
// caller sets StateDir and Logger); ok is false when --cds-bridge is off.
func (o *cdsOptions) config(cmd *cobra.Command) (cfg backend.BridgeConfig, ok bool, err error) {
	if !o.on {
		for _, n := range []string{"cds-socket", "cds-build", "accept-unknown-builds", "cds-name"} {
			if cmd.Flags().Changed(n) {
				return cfg, false, usagef("--%s needs --cds-bridge", n)
			}
		}
		return cfg, false, nil
	}
	if _, err := filepath.Match(o.glob, ""); err != nil || o.glob == "" {
		return cfg, false, usagef("--cds-socket %q: want a path or a glob such as %s", o.glob, backend.DefaultSocketGlob)
	}
	cfg = backend.BridgeConfig{Glob: o.glob, AcceptUnknownBuilds: o.acceptUnknown}
	for _, s := range o.builds {
		b, err := dylib.ParseBuild(s)
		if err != nil {
			return cfg, false, usageErr(err)
		}
		cfg.Builds = append(cfg.Builds, b)
	}
	if cmd.Flags().Changed("cds-name") {
		if o.name == "" {
			return cfg, false, usagef("--cds-name: give a name, or leave the flag out for the device's own")
		}
		name := o.name
		cfg.Label = &name
	}
	return cfg, true, nil
}
