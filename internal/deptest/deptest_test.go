// Package deptest holds the import-graph test: a package may import only
// packages of its own layer or below (the layers of the README's layout
// table; tailscale's tstest/deptest is the model).
package deptest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/iosmux/iosmux"

// layer maps every package of the module (path relative to the module root)
// to its layer. A package missing here fails the test, so a new package has to
// be placed deliberately.
var layer = map[string]int{
	// L0 codecs
	"internal/opack": 0,
	"internal/tlv8":  0,
	"internal/srp":   0,
	// A stdlib-only leaf utility the L1 packages (and above) share: one
	// crash-safe file writer instead of a copy per store.
	"internal/atomicfile": 0,
	"internal/netns":      0,
	"internal/safeplist":  0,
	// What a daemon owns on disk (private runtime folder, locks, pid and
	// log files) and systemd's readiness message: used by sim, tunneld
	// and cmd.
	"internal/runfile":  0,
	"internal/sdnotify": 0,
	// App packages (.ipa): read, inspect, unpack safely. Host and device
	// roles of installation_proxy and the zip conduit share it.
	"internal/ipa": 0,
	// L1 protocol endpoints
	"xpc":      1,
	"tlspsk":   1,
	"usbmux":   1,
	"lockdown": 1,
	"pairing":  1,
	"rsd":      1,
	// The socket protocol between iosmux and its dylib inside
	// CoreDeviceService: both roles over a conn the caller supplies.
	"dylib": 1,
	// L2 transports
	"utun":      2,
	"discovery": 2,
	// L3 tunnel and establishment: a running tunnel, and every way to
	// bring one up.
	"tunnel":    3,
	"establish": 3,
	// L3' developer services (README.md, layout): the shared opener, then one
	// package per service. They sit on L1 (and the opener), never on
	// tunnel: a service client takes a connection, not a tunnel.
	"services/reach":       3,
	"services/amfi":        3,
	"services/mounter":     3,
	"services/afc":         3,
	"services/housearrest": 3,
	"services/instproxy":   3,
	"services/zipconduit":  3,
	"services/syslog":      3,
	"services/ostrace":     3,
	"services/notify":      3,
	"services/crash":       3,
	// CoreDevice: the envelope, with appservice, deviceinfo and openstdio
	// as its sub-packages; debugproxy (GDB remote protocol, forwarder).
	"services/coredevice": 3,
	"services/debugproxy": 3,
	// L4 servers
	"rsdapi":  4,
	"backend": 4,
	"sim":     4,
	"tunneld": 4,
	"mercury": 4,
	// L5 command
	"cmd/iosmux": 5,
	// Outside the layers: test-only helpers.
	"internal/testkit": -1,
	"internal/deptest": -1,
}

// forbidden lists imports that the layer numbers alone would allow.
var forbidden = map[string][]string{
	"backend": {"sim"},
	"sim":     {"backend"},
	"rsdapi":  {"sim", "backend"},
	"tunneld": {"sim", "backend"},
	// Service packages reach each other only through services/reach.
	"services/reach":       {"tunnel", "services/amfi", "services/mounter", "services/afc", "services/housearrest", "services/instproxy", "services/zipconduit"},
	"services/amfi":        {"tunnel", "services/mounter", "services/afc", "services/housearrest", "services/instproxy", "services/zipconduit"},
	"services/mounter":     {"tunnel", "services/amfi", "services/afc", "services/housearrest", "services/instproxy", "services/zipconduit"},
	"services/afc":         {"tunnel", "services/amfi", "services/mounter", "services/housearrest", "services/instproxy", "services/zipconduit"},
	"services/housearrest": {"tunnel", "services/amfi", "services/mounter", "services/afc", "services/instproxy", "services/zipconduit"},
	"services/instproxy":   {"tunnel", "services/amfi", "services/mounter", "services/afc", "services/housearrest", "services/zipconduit"},
	"services/zipconduit":  {"tunnel", "services/amfi", "services/mounter", "services/afc", "services/housearrest", "services/instproxy"},
}

// onlyFrom lists packages that may be imported by the named importers alone
// (tests aside).
var onlyFrom = map[string][]string{
	"sim": {"cmd/iosmux"},
}

// thirdParty pins where some third-party modules may be imported (module
// path prefix → the only importers): the command line's libraries stay in
// the command, the metrics library in the daemon.
var thirdParty = map[string][]string{
	"github.com/spf13/cobra":              {"cmd/iosmux"},
	"github.com/spf13/pflag":              {"cmd/iosmux"},
	"github.com/schollz/progressbar":      {"cmd/iosmux"},
	"github.com/prometheus/client_golang": {"tunneld"},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkgInfo
	for {
		var p pkgInfo
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func rel(path string) (string, bool) {
	if path == module {
		return ".", true
	}
	if r, ok := strings.CutPrefix(path, module+"/"); ok {
		return r, true
	}
	return "", false
}

// place finds the layer entry for a package or one of its parent folders, so
// sub-packages (internal/… under a layer) inherit their parent's layer.
func place(r string) (string, int, bool) {
	for p := r; ; {
		if l, ok := layer[p]; ok {
			return p, l, true
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return "", 0, false
		}
		p = p[:i]
	}
}

// serviceReachesService reports an import between two service packages
// other than of the shared opener, which the layout forbids; with this rule
// a new service package needs no entry in forbidden.
func serviceReachesService(owner, imp string) bool {
	svc := func(p string) bool { return strings.HasPrefix(p, "services/") }
	return svc(owner) && svc(imp) && imp != "services/reach" && !strings.HasPrefix(owner, imp+"/") && !strings.HasPrefix(imp, owner+"/")
}

func TestImportLayers(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	for _, p := range pkgs {
		r, _ := rel(p.ImportPath)
		owner, l, ok := place(r)
		if !ok {
			t.Errorf("%s: not assigned to a layer in internal/deptest", r)
			continue
		}
		for _, imp := range p.Imports {
			ir, ours := rel(imp)
			if !ours {
				for prefix, allowed := range thirdParty {
					if (imp == prefix || strings.HasPrefix(imp, prefix+"/")) && !contains(allowed, owner) {
						t.Errorf("%s imports %s, which only %v may import", r, imp, allowed)
					}
				}
				continue
			}
			iowner, il, ok := place(ir)
			if !ok {
				continue // reported when that package itself is checked
			}
			if iowner == owner {
				continue
			}
			if il == -1 {
				t.Errorf("%s imports %s: test-only helpers may be imported by _test.go files alone", r, ir)
				continue
			}
			if l != -1 && il > l {
				t.Errorf("%s (L%d) imports %s (L%d): a package may import only its own layer or lower", r, l, ir, il)
			}
			if serviceReachesService(owner, iowner) {
				t.Errorf("%s imports %s: a service package reaches another only through services/reach", r, ir)
			}
			for _, f := range forbidden[owner] {
				if iowner == f {
					t.Errorf("%s imports %s, which the layer map forbids", r, ir)
				}
			}
			if allowed, ok := onlyFrom[iowner]; ok && !contains(allowed, owner) {
				t.Errorf("%s imports %s, which only %v may import", r, ir, allowed)
			}
		}
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name, in, owner string
		layer           int
		ok              bool
	}{
		{"exact", "xpc", "xpc", 1, true},
		{"child inherits", "tunnel/internal/pump", "tunnel", 3, true},
		{"unknown", "frobnicate", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner, l, ok := place(tt.in)
			if owner != tt.owner || l != tt.layer || ok != tt.ok {
				t.Errorf("place(%q) = %q, %d, %v; want %q, %d, %v", tt.in, owner, l, ok, tt.owner, tt.layer, tt.ok)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
