package deptest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/iosmux/iosmux"

// The layers of the README's layout table, bottom to top. A package may
// import packages of lower layers, and of its own layer only as the layer's
// order allows.
const (
	outside   = -1 // test-only helpers: imported by _test.go files alone
	l0        = 0  // L0 codecs: pure functions over []byte
	l0io      = 1  // L0' utilities with I/O
	l1        = 2  // L1 protocol endpoints
	l2        = 3  // L2 transports
	l3        = 4  // L3 tunnel and establishment
	lServices = 5  // L3' developer services
	l4        = 6  // L4 servers
	l5        = 7  // L5 command
)

// layerNames are the layers as the README's layout table names them
// (its first column starts with these).
var layerNames = map[int]string{
	outside: "outside", l0: "L0 ", l0io: "L0'", l1: "L1", l2: "L2", l3: "L3 ",
	lServices: "L3'", l4: "L4", l5: "L5",
}

// rules are what the import graph must obey. The real ones are below; the
// planted cases build their own.
type rules struct {
	// layer maps every package of the module (path relative to the module
	// root) to its layer. A package missing here fails the test, so a new
	// package has to be placed deliberately; sub-packages inherit their
	// parent's entry (and may import it).
	layer map[string]int
	// order lists, for a layer, the order in which its packages may import
	// each other: a package may import, from its own layer, only the ones
	// listed before it. "*" stands for every package of the layer not
	// listed, none of which may import another. Layers without a list allow
	// imports within them.
	order map[int][]string
	// forbidden lists imports that the layers alone would allow.
	forbidden map[string][]string
	// onlyFrom lists packages that may be imported by the named importers
	// alone (tests aside).
	onlyFrom map[string][]string
	// thirdParty pins where third-party packages may be imported: a module
	// or package path prefix → the only importers (layer-map entries).
	thirdParty map[string][]string
}

var repoRules = rules{
	layer: map[string]int{
		"internal/opack": l0,
		"internal/tlv8":  l0,
		"internal/srp":   l0,

		// Small helpers with I/O the protocol packages share: crash-safe
		// files, network namespaces, bounded plist decoding, what a daemon
		// owns on disk and systemd's readiness message, the one
		// context→deadline binding, back-off and token bucket.
		"internal/atomicfile": l0io,
		"internal/netns":      l0io,
		"internal/safeplist":  l0io,
		"internal/runfile":    l0io,
		"internal/sdnotify":   l0io,
		"internal/deadline":   l0io,
		"internal/retry":      l0io,
		"internal/pace":       l0io,
		// App packages (.ipa): read, inspect, unpack safely. Host and
		// device roles of installation_proxy and the zip conduit share it.
		"internal/ipa": l0io,

		"xpc":      l1,
		"tlspsk":   l1,
		"usbmux":   l1,
		"lockdown": l1,
		"pairing":  l1,
		"rsd":      l1,
		// The socket protocol between iosmux and its dylib inside
		// CoreDeviceService: both roles over a conn the caller supplies.
		"dylib": l1,

		"utun":      l2,
		"discovery": l2,

		"tunnel":    l3,
		"establish": l3,

		// One package per service over "a connection to the service", and
		// the shared opener (services/reach).
		"services/reach":       lServices,
		"services/amfi":        lServices,
		"services/mounter":     lServices,
		"services/afc":         lServices,
		"services/housearrest": lServices,
		"services/instproxy":   lServices,
		"services/zipconduit":  lServices,
		"services/syslog":      lServices,
		"services/ostrace":     lServices,
		"services/notify":      lServices,
		"services/crash":       lServices,
		"services/coredevice":  lServices,
		"services/debugproxy":  lServices,

		"rsdapi":  l4,
		"mercury": l4,
		"backend": l4,
		"tunneld": l4,
		"sim":     l4,

		"cmd/iosmux": l5,

		"internal/testkit": outside,
		"internal/deptest": outside,
	},
	order: map[int][]string{
		l1: {"xpc", "tlspsk", "usbmux", "lockdown", "pairing", "rsd", "dylib"},
		l2: {"utun", "discovery"},
		l3: {"tunnel", "establish"},
		// Service packages reach each other only through services/reach.
		lServices: {"services/reach", "*"},
		l4:        {"rsdapi", "mercury", "backend", "tunneld", "sim"},
	},
	forbidden: map[string][]string{
		"sim":     {"backend", "tunneld"},
		"tunneld": {"backend"},
		"rsdapi":  {"mercury", "backend", "tunneld", "sim"},
		// A service client takes a connection, not a tunnel.
		"services/reach":       {"tunnel", "establish"},
		"services/amfi":        {"tunnel", "establish"},
		"services/mounter":     {"tunnel", "establish"},
		"services/afc":         {"tunnel", "establish"},
		"services/housearrest": {"tunnel", "establish"},
		"services/instproxy":   {"tunnel", "establish"},
		"services/zipconduit":  {"tunnel", "establish"},
		"services/syslog":      {"tunnel", "establish"},
		"services/ostrace":     {"tunnel", "establish"},
		"services/notify":      {"tunnel", "establish"},
		"services/crash":       {"tunnel", "establish"},
		"services/coredevice":  {"tunnel", "establish"},
		"services/debugproxy":  {"tunnel", "establish"},
	},
	onlyFrom: map[string][]string{
		"sim": {"cmd/iosmux"},
	},
	thirdParty: map[string][]string{
		"gvisor.dev/gvisor":                   {"utun"},
		"github.com/quic-go/quic-go":          {"establish"},
		"golang.org/x/net/http2":              {"xpc"},
		"golang.zx2c4.com/wireguard/tun":      {"utun", "tunnel", "establish", "tunneld", "sim", "cmd/iosmux"},
		"github.com/spf13/cobra":              {"cmd/iosmux"},
		"github.com/spf13/pflag":              {"cmd/iosmux"},
		"github.com/schollz/progressbar":      {"cmd/iosmux"},
		"github.com/prometheus/client_golang": {"tunneld"},
	},
}

type pkgInfo struct {
	ImportPath string
	Imports    []string
}

// listPackages lists the module's packages as built for goos.
func listPackages(t *testing.T, goos string) []pkgInfo {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", module+"/...")
	cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list (GOOS=%s): %v", goos, err)
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
func (ru *rules) place(r string) (string, int, bool) {
	for p := r; ; {
		if l, ok := ru.layer[p]; ok {
			return p, l, true
		}
		i := strings.LastIndex(p, "/")
		if i < 0 {
			return "", 0, false
		}
		p = p[:i]
	}
}

// rank is where owner stands in its layer's order: its index, the index of
// "*" for a package the list does not name, or -1 without a list.
func (ru *rules) rank(l int, owner string) int {
	list, ok := ru.order[l]
	if !ok {
		return -1
	}
	if i := slices.Index(list, owner); i >= 0 {
		return i
	}
	return slices.Index(list, "*")
}

func hasPrefixPath(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// check returns the import graph's violations of ru, one line each.
func (ru *rules) check(pkgs []pkgInfo) []string {
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	for _, p := range pkgs {
		r, _ := rel(p.ImportPath)
		owner, l, ok := ru.place(r)
		if !ok {
			report("%s: not assigned to a layer in internal/deptest", r)
			continue
		}
		for _, imp := range p.Imports {
			ir, ours := rel(imp)
			if !ours {
				for prefix, allowed := range ru.thirdParty {
					if hasPrefixPath(imp, prefix) && !slices.Contains(allowed, owner) {
						report("%s imports %s, which only %v may import", r, imp, allowed)
					}
				}
				continue
			}
			iowner, il, ok := ru.place(ir)
			if !ok {
				continue // reported when that package itself is checked
			}
			if iowner == owner {
				continue
			}
			if il == outside {
				report("%s imports %s: test-only helpers may be imported by _test.go files alone", r, ir)
				continue
			}
			if l != outside && il > l {
				report("%s (%s) imports %s (%s): a package may import only its own layer or lower", r, layerNames[l], ir, layerNames[il])
			}
			if l == il {
				if from, to := ru.rank(l, owner), ru.rank(l, iowner); from >= 0 && (to < 0 || to >= from) {
					report("%s imports %s: within %s a package may import only those before it in %v", r, ir, layerNames[l], ru.order[l])
				}
			}
			for _, f := range ru.forbidden[owner] {
				if iowner == f {
					report("%s imports %s, which the layer map forbids", r, ir)
				}
			}
			if allowed, ok := ru.onlyFrom[iowner]; ok && !slices.Contains(allowed, owner) {
				report("%s imports %s, which only %v may import", r, ir, allowed)
			}
		}
	}
	return problems
}

// stale returns the entries of ru that name nothing: a layer-map package,
// an order, forbidden or onlyFrom name that is not a package of the module
// (in any of the listings), or a third-party prefix no package imports.
func (ru *rules) stale(listings ...[]pkgInfo) []string {
	ours := map[string]bool{}
	imported := map[string]bool{}
	for _, pkgs := range listings {
		for _, p := range pkgs {
			r, _ := rel(p.ImportPath)
			ours[r] = true
			for _, imp := range p.Imports {
				if _, mine := rel(imp); !mine {
					imported[imp] = true
				}
			}
		}
	}
	var problems []string
	named := func(where, name string) {
		if !ours[name] {
			problems = append(problems, fmt.Sprintf("%s names %s, which is not a package of the module: a stale entry", where, name))
		}
	}
	for p := range ru.layer {
		named("layer", p)
	}
	for l, list := range ru.order {
		for _, p := range list {
			if p == "*" {
				continue
			}
			named("order", p)
			if ours[p] && ru.layer[p] != l {
				problems = append(problems, fmt.Sprintf("order of %s lists %s, which is not in that layer", layerNames[l], p))
			}
		}
	}
	for p, list := range ru.forbidden {
		named("forbidden", p)
		for _, f := range list {
			named("forbidden["+p+"]", f)
		}
	}
	for p, list := range ru.onlyFrom {
		named("onlyFrom", p)
		for _, f := range list {
			named("onlyFrom["+p+"]", f)
		}
	}
	for prefix, list := range ru.thirdParty {
		used := false
		for imp := range imported {
			used = used || hasPrefixPath(imp, prefix)
		}
		if !used {
			problems = append(problems, fmt.Sprintf("thirdParty names %s, which no package imports: a stale entry", prefix))
		}
		for _, f := range list {
			named("thirdParty["+prefix+"]", f)
		}
	}
	sort.Strings(problems)
	return problems
}

// goosList are the systems the import graph is checked for: build tags and
// file suffixes make it differ (utun imports x/net/route on darwin only).
var goosList = []string{"linux", "darwin"}

func TestImportLayers(t *testing.T) {
	var listings [][]pkgInfo
	for _, goos := range goosList {
		pkgs := listPackages(t, goos)
		if len(pkgs) == 0 {
			t.Fatalf("go list (GOOS=%s) found no packages", goos)
		}
		listings = append(listings, pkgs)
		for _, p := range repoRules.check(pkgs) {
			t.Errorf("GOOS=%s: %s", goos, p)
		}
	}
	for _, p := range repoRules.stale(listings...) {
		t.Error(p)
	}
}

// TestLayoutTableAgrees: the README's layout table names every layer-map
// entry in its layer's row and nothing else.
func TestLayoutTableAgrees(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := layoutRows(f)
	if len(rows) == 0 {
		t.Fatal("README.md has no layout table (## Layout, rows | layer | packages | job |)")
	}
	for _, p := range layoutMismatches(repoRules.layer, rows) {
		t.Error(p)
	}
}

var backticked = regexp.MustCompile("`([^`]+)`")

// layoutRows reads the README's layout table: layer column → packages.
func layoutRows(r io.Reader) map[string][]string {
	rows := map[string][]string{}
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Layout"
		case in && strings.HasPrefix(line, "|") && !strings.HasPrefix(line, "|---") && !strings.HasPrefix(line, "| layer"):
			cells := strings.Split(line, "|")
			if len(cells) < 3 {
				continue
			}
			name := strings.TrimSpace(cells[1])
			if _, ok := rows[name]; !ok {
				rows[name] = nil // the row exists even when it lists nothing
			}
			for _, m := range backticked.FindAllStringSubmatch(cells[2], -1) {
				rows[name] = append(rows[name], m[1])
			}
		}
	}
	return rows
}

// layoutMismatches compares the layer map with the README's rows.
func layoutMismatches(layer map[string]int, rows map[string][]string) []string {
	var problems []string
	rowOf := func(l int) (string, bool) {
		for name := range rows {
			if strings.HasPrefix(name+" ", layerNames[l]) || strings.HasPrefix(strings.ToLower(name), layerNames[l]) {
				return name, true
			}
		}
		return "", false
	}
	listed := map[string]string{}
	for name, pkgs := range rows {
		for _, p := range pkgs {
			listed[p] = name
		}
	}
	for p, l := range layer {
		name, ok := rowOf(l)
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("the README's layout table has no row for %s (%s)", layerNames[l], p))
		case listed[p] != name:
			problems = append(problems, fmt.Sprintf("%s is in %s in the layer map, but the README's layout table lists it under %q", p, layerNames[l], listed[p]))
		}
	}
	for p, name := range listed {
		if _, ok := layer[p]; !ok {
			problems = append(problems, fmt.Sprintf("the README's layout table lists %s (%s), which the layer map does not", p, name))
		}
	}
	sort.Strings(problems)
	return problems
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name, in, owner string
		layer           int
		ok              bool
	}{
		{"exact", "xpc", "xpc", l1, true},
		{"child inherits", "tunnel/internal/pump", "tunnel", l3, true},
		{"unknown", "frobnicate", "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			owner, l, ok := repoRules.place(tt.in)
			if owner != tt.owner || l != tt.layer || ok != tt.ok {
				t.Errorf("place(%q) = %q, %d, %v; want %q, %d, %v", tt.in, owner, l, ok, tt.owner, tt.layer, tt.ok)
			}
		})
	}
}

// planted are rules for a small made-up module, and pkg builds one of its
// packages.
var planted = rules{
	layer: map[string]int{
		"internal/codec": l0, "xpc": l1, "lockdown": l1, "utun": l2, "establish": l3,
		"services/reach": lServices, "services/a": lServices, "services/b": lServices,
		"backend": l4, "tunneld": l4, "sim": l4, "cmd/iosmux": l5, "internal/testkit": outside,
	},
	order: map[int][]string{
		l1:        {"xpc", "lockdown"},
		lServices: {"services/reach", "*"},
	},
	forbidden:  map[string][]string{"backend": {"tunneld"}},
	onlyFrom:   map[string][]string{"sim": {"cmd/iosmux"}},
	thirdParty: map[string][]string{"gvisor.dev/gvisor": {"utun"}, "github.com/quic-go/quic-go": {"establish"}},
}

func pkg(path string, imports ...string) pkgInfo {
	p := pkgInfo{ImportPath: module + "/" + path}
	for _, i := range imports {
		if strings.Contains(strings.SplitN(i, "/", 2)[0], ".") {
			p.Imports = append(p.Imports, i) // third party
		} else {
			p.Imports = append(p.Imports, module+"/"+i)
		}
	}
	return p
}

// clean is the made-up module obeying every rule.
var clean = []pkgInfo{
	pkg("internal/codec"), pkg("xpc", "internal/codec"), pkg("lockdown", "xpc"),
	pkg("utun", "gvisor.dev/gvisor/pkg/tcpip", "xpc"), pkg("establish", "github.com/quic-go/quic-go", "utun", "lockdown"),
	pkg("services/reach", "lockdown"), pkg("services/a", "services/reach"), pkg("services/b", "services/reach"),
	pkg("backend", "establish"), pkg("tunneld", "establish"), pkg("sim", "services/a"),
	pkg("cmd/iosmux", "sim", "tunneld", "backend"), pkg("internal/testkit"),
}

// TestImportRulesPlanted: each rule reports a planted violation, and the
// made-up module without one is clean.
func TestImportRulesPlanted(t *testing.T) {
	if got := planted.check(clean); len(got) != 0 {
		t.Fatalf("the clean module has problems: %q", got)
	}
	if got := planted.stale(clean); len(got) != 0 {
		t.Fatalf("the clean rules have stale entries: %q", got)
	}
	tests := []struct {
		name string
		bad  pkgInfo // replaces the package of the same path
		want string
	}{
		{"layer above", pkg("lockdown", "xpc", "utun"), "a package may import only its own layer or lower"},
		{"order within L1", pkg("xpc", "lockdown"), "may import only those before it"},
		{"service to service", pkg("services/a", "services/b"), "may import only those before it"},
		{"forbidden", pkg("backend", "tunneld"), "which the layer map forbids"},
		{"only from", pkg("backend", "sim"), "which only [cmd/iosmux] may import"},
		{"gVisor outside utun", pkg("backend", "gvisor.dev/gvisor/pkg/tcpip/stack"), "gvisor.dev/gvisor/pkg/tcpip/stack, which only [utun] may import"},
		{"quic-go outside establish", pkg("tunneld", "github.com/quic-go/quic-go/http3"), "which only [establish] may import"},
		{"test helper", pkg("tunneld", "internal/testkit"), "test-only helpers"},
		{"new package", pkg("frobnicate"), "not assigned to a layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkgs := slices.Clone(clean)
			i := slices.IndexFunc(pkgs, func(p pkgInfo) bool { return p.ImportPath == tt.bad.ImportPath })
			if i < 0 {
				pkgs = append(pkgs, tt.bad)
			} else {
				pkgs[i] = tt.bad
			}
			got := planted.check(pkgs)
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("problems %q, want one mentioning %q", got, tt.want)
			}
		})
	}
}

// TestStaleEntriesPlanted: an entry naming nothing is reported.
func TestStaleEntriesPlanted(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tweak func(*rules)
		want  string
	}{
		{"layer", func(r *rules) { r.layer["gone"] = l1 }, "layer names gone"},
		{"order", func(r *rules) { r.order[l1] = append(r.order[l1], "gone") }, "order names gone"},
		{"order in another layer", func(r *rules) { r.order[l1] = append(r.order[l1], "utun") }, "order of L1 lists utun"},
		{"forbidden", func(r *rules) { r.forbidden["backend"] = []string{"gone"} }, "forbidden[backend] names gone"},
		{"only from", func(r *rules) { r.onlyFrom["gone"] = []string{"cmd/iosmux"} }, "onlyFrom names gone"},
		{"unused third party", func(r *rules) { r.thirdParty["example.com/gone"] = []string{"utun"} }, "example.com/gone, which no package imports"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := rules{layer: map[string]int{}, order: map[int][]string{}, forbidden: map[string][]string{}, onlyFrom: map[string][]string{}, thirdParty: map[string][]string{}}
			for k, v := range planted.layer {
				r.layer[k] = v
			}
			for k, v := range planted.order {
				r.order[k] = slices.Clone(v)
			}
			for k, v := range planted.forbidden {
				r.forbidden[k] = slices.Clone(v)
			}
			for k, v := range planted.onlyFrom {
				r.onlyFrom[k] = slices.Clone(v)
			}
			for k, v := range planted.thirdParty {
				r.thirdParty[k] = slices.Clone(v)
			}
			tt.tweak(&r)
			got := r.stale(clean)
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("stale %q, want one mentioning %q", got, tt.want)
			}
		})
	}
}

// TestLayoutTablePlanted: a package the README's table lists in another
// row, leaves out, or adds is reported.
func TestLayoutTablePlanted(t *testing.T) {
	table := func(rows ...string) string {
		return "# x\n\n## Layout\n\n| layer | packages | job |\n|---|---|---|\n" + strings.Join(rows, "\n") + "\n\n## Next\n\n| L9 | `ignored` | x |\n"
	}
	layer := map[string]int{"xpc": l1, "utun": l2}
	for _, tt := range []struct {
		name, readme, want string
	}{
		{"agrees", table("| L1 protocols | `xpc` | a |", "| L2 transports | `utun` | b |"), ""},
		{"wrong row", table("| L1 protocols | `xpc`, `utun` | a |", "| L2 transports | | b |"), "lists it under \"L1 protocols\""},
		{"missing", table("| L1 protocols | `xpc` | a |", "| L2 transports | | b |"), "utun is in L2"},
		{"extra", table("| L1 protocols | `xpc`, `gone` | a |", "| L2 transports | `utun` | b |"), "lists gone"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := layoutMismatches(layer, layoutRows(strings.NewReader(tt.readme)))
			if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.Contains(got[0], tt.want)) {
				t.Errorf("mismatches %q, want %q", got, tt.want)
			}
		})
	}
}

// TestListingsPerGOOS: the listings really differ by system, so checking
// both matters: utun reads routes through x/net/route on macOS only.
func TestListingsPerGOOS(t *testing.T) {
	imports := func(goos string) bool {
		for _, p := range listPackages(t, goos) {
			if p.ImportPath == module+"/utun" {
				return slices.Contains(p.Imports, "golang.org/x/net/route")
			}
		}
		t.Fatalf("GOOS=%s: no utun package", goos)
		return false
	}
	if linux, darwin := imports("linux"), imports("darwin"); linux || !darwin {
		t.Errorf("utun imports x/net/route: linux %v, darwin %v; want only darwin", linux, darwin)
	}
}
