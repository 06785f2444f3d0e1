package main

import (
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// buildInfo is what `iosmux version` prints: the module version and the
// VCS stamp the go command records (absent with -buildvcs=false).
type buildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(devel)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if bi.Main.Version != "" {
		b.Version = bi.Main.Version
	}
	b.Go = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

func (b buildInfo) String() string {
	var extra []string
	if b.Revision != "" {
		rev := "revision " + b.Revision
		if b.Modified {
			rev += " (modified)"
		}
		extra = append(extra, rev)
	} else {
		extra = append(extra, "no VCS revision recorded")
	}
	if b.Time != "" {
		extra = append(extra, b.Time)
	}
	if b.Go != "" {
		extra = append(extra, b.Go)
	}
	return fmt.Sprintf("iosmux %s (%s)", b.Version, strings.Join(extra, ", "))
}

func versionString() string { return readBuildInfo().String() }

func newVersionCmd(a *app) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print the iosmux version, VCS revision and build time",
		Long: `Prints the module version and the VCS revision and commit time the Go
toolchain stamped into the binary (make build stamps them; a build with
-buildvcs=false has none). 'iosmux --version' prints the same line.`,
		Example: "  iosmux version\n  iosmux --version\n  iosmux version --json",
		RunE: func(cmd *cobra.Command, args []string) error {
			b := readBuildInfo()
			if asJSON {
				return writeJSON(a.stdout, b)
			}
			_, err := fmt.Fprintln(a.stdout, b)
			return err
		},
	}
	addJSONFlag(cmd, &asJSON, "the build information")
	return cmd
}
