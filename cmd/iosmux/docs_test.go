package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md and README.md's command list from the tree")

// TestCLIDoc: docs/cli.md and the command list in README.md are what the
// tree generates (go test ./cmd/iosmux -run TestCLIDoc -update rewrites
// them), and the reference names every command, flag and environment
// variable.
func TestCLIDoc(t *testing.T) {
	a := testApp(io.Discard, nil)
	root := newRootCmd(a)
	var md bytes.Buffer
	writeMarkdown(&md, a, root)

	docPath := filepath.Join("..", "..", "docs/cli.md")
	readmePath := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(readme, []byte(readmeBegin))
	j := bytes.Index(readme, []byte(readmeEnd))
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated command list between %q and %q", readmeBegin, readmeEnd)
	}
	newReadme := append(append(append([]byte{}, readme[:i+len(readmeBegin)]...), readmeUsing(root)...), readme[j:]...)
	if *update {
		if err := os.WriteFile(docPath, md.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(readmePath, newReadme, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, md.Bytes()) {
		t.Errorf("docs/cli.md is stale: run go test ./cmd/iosmux -run TestCLIDoc -update")
	}
	if !bytes.Equal(readme, newReadme) {
		t.Errorf("README.md's command list is stale: run go test ./cmd/iosmux -run TestCLIDoc -update")
	}

	doc := md.String()
	walk(root, func(c *cobra.Command) {
		if !c.IsAvailableCommand() || c == root {
			return
		}
		if !strings.Contains(doc, "\n## "+c.CommandPath()+"\n") {
			t.Errorf("docs/cli.md has no section for %s", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !strings.Contains(doc, "--"+f.Name) {
				t.Errorf("docs/cli.md does not name %s --%s", c.CommandPath(), f.Name)
			}
			_, dep := flagAliases(f)
			for _, d := range dep {
				if !strings.Contains(doc, "`--"+d+"`") {
					t.Errorf("docs/cli.md does not name the old spelling --%s", d)
				}
			}
		})
	})
	for _, v := range envVars {
		if !strings.Contains(doc, "`"+v.Name+"`") {
			t.Errorf("docs/cli.md does not name %s", v.Name)
		}
	}
}

// TestManPages: iosmux docs man writes one page per command.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := runChecked(t, nil, "docs", "man", dir); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, name := range []string{"iosmux.1", "iosmux-pair-list.1", "iosmux-tunneld.1"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Contains(b, []byte(".TH \"IOSMUX\"")) {
			t.Errorf("%s: %v %q", name, err, firstLine(b))
		}
	}
}

// TestEnvDeclared: every environment variable a command reads is declared
// (strictEnv panics otherwise); run the commands that read the most.
func TestEnvDeclared(t *testing.T) {
	for _, args := range [][]string{
		{"list", "--usbmux-address", "unix:///nonexistent"},
		{"list"},
		{"pair", "list"},
		{"rsd-info", "--tunnel", "U", "--tunneld", "127.0.0.1:1", "--timeout", "1s"},
		{"version"},
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%q: %v", args, r)
				}
			}()
			run(args, io.Discard, io.Discard, func(string) string { return "" })
		}()
	}
}

func TestVersion(t *testing.T) {
	b := buildInfo{Version: "v1.2.3", Revision: "98a2e61f", Time: "2026-12-06T20:06:24Z", Modified: true, Go: "go1.26.8"}
	if got, want := b.String(), "iosmux v1.2.3 (revision 98a2e61f (modified), 2026-12-06T20:06:24Z, go1.26.8)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got := (buildInfo{Version: "(devel)"}).String(); got != "iosmux (devel) (no VCS revision recorded)" {
		t.Errorf("unstamped: %q", got)
	}
	code, out, _ := runChecked(t, nil, "version", "--json")
	if code != 0 || !strings.Contains(out, `"version":`) || !strings.Contains(out, `"go": "go1.`) {
		t.Errorf("version --json: exit %d, %q", code, out)
	}
	code, out2, _ := runChecked(t, nil, "--version")
	code2, out3, _ := runChecked(t, nil, "version")
	if code != 0 || code2 != 0 || out2 != out3 || !strings.HasPrefix(out2, "iosmux ") {
		t.Errorf("--version %q and version %q differ", out2, out3)
	}
}
