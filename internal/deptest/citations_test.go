package deptest

// The citation test: every comment, script and document of the repository
// may cite only files that are in the repository (docs/protocols/…, docs/…,
// README.md) or a public reference by repository and path. A citation of
// the form "NAME.md §N" must name a file that exists and a section that is a
// heading of it: headings that can be cited start with their number
// ("## 3. Pair-verify", "### 3.2 Step V2"), as docs/protocols/README.md
// explains.
//
// What is read as a citation, in every tracked text file:
//
//   - a Markdown file name or path (tunnel.md, docs/perf.md, ../x/y.md);
//   - a path under docs/ or shared/ (shared/ is outside the repository and
//     is always an error, as is any path starting with ../ or /);
//   - "RFC 1234" or a URL, which makes the following § numbers theirs;
//   - "§N" or "§N–§M": a section of the last file or RFC cited in the same
//     paragraph (a comment block up to an empty comment line or a line of
//     code; a Markdown paragraph, list item or table row). In one of the
//     docs/protocols notes a § without a file means the note itself;
//     anywhere else it is an error, so that every § can be checked.
//
// A path belongs to a public reference implementation, and is not checked,
// when the word before it names one (pymobiledevice3, go-ios, owner/repo,
// …) or when it is a path with folders that cannot be ours (its first
// folder is not a top-level entry of the repository). URLs are skipped.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// citationsSelf is this file; its planted cases are not citations.
const citationsSelf = "internal/deptest/citations_test.go"

// protocolNotes is where a bare NAME.md is looked for besides the citing
// file's own folder and the repository root.
const protocolNotes = "docs/protocols"

// upstreams are words that, right before a path, say the path is in a
// public reference implementation rather than in this repository.
var upstreams = map[string]bool{
	"pymobiledevice3": true, "pmd3": true, "go-ios": true, "idevice": true,
	"appium": true, "appium-ios-remotexpc": true, "libimobiledevice": true,
	"libusbmuxd": true, "usbmuxd": true, "frida": true, "frida-core": true,
	"pyatv": true, "opack2": true, "srptools": true, "HomeKitADK": true,
	"wireguard-go": true, "tailscale": true, "quic-go": true, "gvisor": true,
	"pytun-pmd3": true,
}

var (
	citeRE = regexp.MustCompile(
		`(?P<url>[A-Za-z][A-Za-z0-9+.-]*://[^\s)>\]]+)` +
			`|(?P<rfc>\bRFC ?[0-9]{3,5}\b)` +
			`|(?P<md>(?:\.\./|/)?(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.md\b)` +
			`|(?P<dir>\b(?:docs|shared)/[A-Za-z0-9_./-]*)` +
			`|(?P<sec>§ ?([0-9]+(?:\.[0-9]+)*)(?: ?[–-] ?§? ?([0-9]+(?:\.[0-9]+)*))?)`)
	headingRE = regexp.MustCompile(`^#{1,6}[ \t]+([0-9]+(?:\.[0-9]+)*)\.?(?:[ \t]|$)`)
	ownerRepo = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$`)
	listItem  = regexp.MustCompile(`^(?:[-*+]|[0-9]+\.)[ \t]`)
)

// repo is what the checker knows about the repository: its files and how to
// read one. The real one comes from git; the planted cases build their own.
type repo struct {
	files    map[string]bool // slash paths relative to the root
	dirs     map[string]bool
	top      map[string]bool // first path elements
	read     func(string) ([]byte, error)
	headings map[string]map[string]bool
}

func newRepo(paths []string, read func(string) ([]byte, error)) *repo {
	r := &repo{files: map[string]bool{}, dirs: map[string]bool{}, top: map[string]bool{},
		read: read, headings: map[string]map[string]bool{}}
	for _, p := range paths {
		r.files[p] = true
		first, _, _ := strings.Cut(p, "/")
		r.top[first] = true
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			r.dirs[d] = true
		}
	}
	return r
}

func (r *repo) exists(p string) bool { return r.files[p] || r.dirs[strings.TrimSuffix(p, "/")] }

// sections returns the numbers of file's numbered headings.
func (r *repo) sections(file string) map[string]bool {
	if h, ok := r.headings[file]; ok {
		return h
	}
	h := map[string]bool{}
	if b, err := r.read(file); err == nil {
		inFence := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
				continue
			}
			if m := headingRE.FindStringSubmatch(line); m != nil && !inFence {
				h[m[1]] = true
			}
		}
	}
	r.headings[file] = h
	return h
}

// anchor is what a § refers to.
type anchor struct {
	file string // a file of the repository
	skip bool   // an RFC or a public reference: not checked
}

// lineStyle says how a file marks comments, which decides paragraphs.
type lineStyle int

const (
	styleProse lineStyle = iota // Markdown, text: blank lines, headings, items and rows split
	styleSlash                  // Go, JavaScript, C: // comments
	styleHash                   // shell, Makefile, YAML, unit files: # comments
	styleOther                  // data: every line stands alone
)

func styleOf(p string) lineStyle {
	switch ext := path.Ext(p); ext {
	case ".md", ".txt":
		return styleProse
	case ".go", ".mjs", ".js", ".ts", ".c", ".h", ".m", ".proto":
		return styleSlash
	case ".sh", ".mk", ".yml", ".yaml", ".toml", ".service", ".conf", ".py", ".cfg", ".ini", "":
		return styleHash
	}
	if path.Base(p) == "Makefile" {
		return styleHash
	}
	return styleOther
}

// commentLine reports whether line is a whole-line comment of style s, and
// whether its text is empty (an empty comment line ends a paragraph).
func commentLine(s lineStyle, line string) (comment, empty bool) {
	t := strings.TrimSpace(line)
	var rest string
	switch s {
	case styleSlash:
		switch {
		case strings.HasPrefix(t, "//"):
			rest = t[2:]
		case strings.HasPrefix(t, "/*"), strings.HasPrefix(t, "*"):
			rest = strings.Trim(t, "/* ")
		default:
			return false, false
		}
	case styleHash:
		if !strings.HasPrefix(t, "#") {
			return false, false
		}
		rest = strings.TrimLeft(t, "#")
	default:
		return false, false
	}
	return true, strings.TrimSpace(rest) == ""
}

// continues reports whether line belongs to the paragraph of prev.
func continues(s lineStyle, prev, line string) bool {
	switch s {
	case styleProse:
		p, t := strings.TrimSpace(prev), strings.TrimSpace(line)
		if p == "" || t == "" || strings.HasPrefix(p, "#") {
			return false
		}
		return !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, "|") && !listItem.MatchString(t)
	case styleSlash, styleHash:
		pc, pe := commentLine(s, prev)
		lc, le := commentLine(s, line)
		return pc && lc && !pe && !le
	}
	return false
}

// wordBefore returns the word right before position i of line, without
// surrounding quotes, backticks, brackets and a possessive.
func wordBefore(line string, i int) string {
	before := strings.TrimRight(line[:i], " \t`'\"([*")
	if j := strings.LastIndexAny(before, " \t(`"); j >= 0 {
		before = before[j+1:]
	}
	before = strings.TrimSuffix(strings.TrimRight(before, ":,;"), "'s")
	return before
}

// citeMarks are substrings every match of citeRE contains (a URL's "://",
// "RFC", ".md", a docs/ or shared/ path, "§"): a line without any cannot
// cite, and skipping the regular expression there keeps the test fast
// (most lines are code).
var citeMarks = []string{"://", "RFC", ".md", "docs/", "shared/", "§"}

func mayCite(line string) bool {
	for _, m := range citeMarks {
		if strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// checkFile returns the problems of file's citations, one line each.
func (r *repo) checkFile(file string, text []byte) []string {
	var problems []string
	s := styleOf(file)
	dir := path.Dir(file)
	self := anchor{}
	if path.Dir(file) == protocolNotes && path.Ext(file) == ".md" {
		self = anchor{file: file}
	}
	lines := strings.Split(string(text), "\n")
	cur := self
	inFence := false
	for n, line := range lines {
		if s == styleProse && strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
		}
		if n == 0 || !(continues(s, lines[n-1], line) || s == styleProse && inFence) {
			cur = self
		}
		report := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", file, n+1, fmt.Sprintf(format, args...)))
		}
		if !mayCite(line) {
			continue
		}
		for _, m := range citeRE.FindAllStringSubmatchIndex(line, -1) {
			group := func(k int) string {
				if m[2*k] < 0 {
					return ""
				}
				return line[m[2*k]:m[2*k+1]]
			}
			switch {
			case group(1) != "", group(2) != "": // a URL or an RFC
				cur = anchor{skip: true}
			case group(3) != "" || group(4) != "": // a file or folder
				tok := strings.TrimRight(group(3)+group(4), ".,;:")
				cur = r.resolve(tok, wordBefore(line, m[0]), dir, report)
			case group(5) != "": // a section
				if cur.skip {
					continue
				}
				if cur.file == "" {
					report("%s has no file: name the note it refers to (e.g. tunnel.md %s)", group(5), group(5))
					continue
				}
				if path.Ext(cur.file) != ".md" {
					report("%s follows %s, which has no numbered sections", group(5), cur.file)
					continue
				}
				secs := r.sections(cur.file)
				for _, num := range []string{group(6), group(7)} {
					if num != "" && !secs[num] {
						report("cites %s §%s, but %s has no heading numbered %s", path.Base(cur.file), num, cur.file, num)
					}
				}
			}
		}
	}
	return problems
}

// resolve finds the file a path token names, reporting one outside the
// repository or missing from it (the § numbers after such a file are not
// reported again).
func (r *repo) resolve(tok, before, dir string, report func(string, ...any)) anchor {
	if upstreams[before] || ownerRepo.MatchString(before) && !r.exists(before) {
		return anchor{skip: true}
	}
	clean := path.Clean(tok)
	switch {
	case strings.HasPrefix(tok, "shared/") || strings.HasPrefix(tok, "/") || strings.HasPrefix(clean, "../"):
		report("cites %s, which is outside the repository: cite docs/protocols/… or a public reference", tok)
		return anchor{skip: true}
	case strings.Contains(tok, "/"):
		for _, c := range []string{path.Join(dir, tok), clean} {
			if r.exists(c) {
				if strings.HasSuffix(tok, "/") || !r.files[c] {
					return anchor{}
				}
				return anchor{file: c}
			}
		}
		first, _, _ := strings.Cut(clean, "/")
		if !r.top[first] {
			return anchor{skip: true} // a reference implementation's path
		}
		report("cites %s, which is not in the repository", tok)
		return anchor{skip: true}
	}
	for _, c := range []string{path.Join(dir, tok), path.Join(protocolNotes, tok), tok} {
		if r.files[c] {
			return anchor{file: c}
		}
	}
	report("cites %s, which is not in the repository (docs/protocols/README.md lists the notes)", tok)
	return anchor{skip: true}
}

// trackedFiles lists the repository's files: git's index, or, outside a
// git checkout, the tree without .git and node_modules.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output(); err == nil {
		var files []string
		for _, f := range bytes.Split(out, []byte{0}) {
			if len(f) > 0 {
				files = append(files, string(f))
			}
		}
		return files
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listing the repository: %v", err)
	}
	return files
}

func TestCitations(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	files := trackedFiles(t, root)
	if !slices.Contains(files, "go.mod") || !slices.Contains(files, protocolNotes+"/README.md") {
		t.Fatalf("%s does not look like the repository root (no go.mod or %s/README.md)", root, protocolNotes)
	}
	r := newRepo(files, func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, p)) })
	var problems []string
	checked := 0
	for _, f := range files {
		if f == citationsSelf {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree but still in the index
		}
		if len(b) > 4<<20 || bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 {
			continue // binary or generated
		}
		checked++
		problems = append(problems, r.checkFile(f, b)...)
	}
	if checked < 100 {
		t.Fatalf("only %d text files checked; the listing is wrong", checked)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCitationsPlanted runs the checker on a small planted repository: each
// bad citation must be reported, each good one must not.
func TestCitationsPlanted(t *testing.T) {
	notes := map[string]string{
		"docs/protocols/README.md": "# Notes\n",
		"docs/protocols/tunnel.md": "# Tunnels\n\n## 1. Paths\n\n### 1.2 Versions\n\n## 2. CDTunnel\n\nSee §1.2 and rsd.md §2.\n",
		"docs/protocols/rsd.md":    "# RSD\n\n## 2. Handshake\n",
		"docs/perf.md":             "# Perf\n",
		"README.md":                "# iosmux\n",
		"xpc/testdata/README.md":   "# vectors\n",
	}
	tests := []struct {
		name, file, text string
		want             []string // substrings of the problems, in order; none means clean
	}{
		{"section exists", "tunnel/a.go", "// CDTunnel (tunnel.md §2; versions §1.2).\n", nil},
		{"range exists", "tunnel/a.go", "// tunnel.md §1–§2\n", nil},
		{"continued paragraph", "tunnel/a.go", "// see tunnel.md §1,\n// and §2 there\n", nil},
		{"missing section", "tunnel/a.go", "// the frame (tunnel.md §3.1)\n", []string{"no heading numbered 3.1"}},
		{"range end missing", "tunnel/a.go", "// tunnel.md §1.2–§1.4\n", []string{"no heading numbered 1.4"}},
		{"file outside the repository", "pairing/a.go", "// remotexpc.md §4.2\n", []string{"remotexpc.md, which is not in the repository"}},
		{"shared spec", "pairing/a.go", "// shared/spec/remotepairing.md §3\n", []string{"outside the repository"}},
		{"shared vectors", "pairing/a_test.go", "// vectors from shared/testvectors/pairing\n", []string{"outside the repository"}},
		{"parent folder", "pairing/a.go", "// ../shared/STYLE.md\n", []string{"outside the repository"}},
		{"style guide", "utun/a.go", "// (STYLE.md §2)\n", []string{"STYLE.md, which is not in the repository"}},
		{"bare section", "pairing/a.go", "// the counter (§1.5)\n", []string{"has no file"}},
		{"spec without file", "pairing/a.go", "// as the spec says (spec §4.3)\n", []string{"has no file"}},
		{"empty comment line ends the paragraph", "tunnel/a.go", "// tunnel.md §1\n//\n// (§2)\n", []string{"has no file"}},
		{"code ends the paragraph", "tunnel/a.go", "// tunnel.md §1\nx := 1\n// (§2)\n", []string{"has no file"}},
		{"rfc", "discovery/a.go", "// RFC 6762 §5.2, then §6.7\n", nil},
		{"rfc does not carry over a note", "discovery/a.go", "// tunnel.md §9 and RFC 6762 §18.12\n", []string{"no heading numbered 9"}},
		{"reference path", "tunnel/a.go", "// (pmd3 misc/RemoteXPC.md §4)\n", nil},
		{"reference folder", "tunnel/a.go", "// pymobiledevice3/remote/notes.md says so\n", nil},
		{"reference repo", "tunnel/a.go", "// doronz88/pymobiledevice3 `docs/guides/ios17-tunnels.md`\n", nil},
		{"our docs path", "tunnel/a_test.go", "// figures in docs/perf.md\n", nil},
		{"missing docs path", "tunnel/a_test.go", "// figures in docs/speed.md\n", []string{"docs/speed.md, which is not in the repository"}},
		{"missing docs folder", "tunnel/a_test.go", "// see docs/guides/\n", []string{"docs/guides/, which is not in the repository"}},
		{"folder-relative path", "xpc/a.go", "// testdata/README.md\n", nil},
		{"url", "tunnel/a.go", "// https://example.com/shared/STYLE.md §11\n", nil},
		{"one report per bad file", "pairing/a.go", "// remotexpc.md §4.2, §4.3\n", []string{"not in the repository"}},
		{"note cites itself", "docs/protocols/tunnel.md", "# T\n\n## 1. A\n\nSee §1, not §7.\n", []string{"no heading numbered 7"}},
		{"note cites another", "docs/protocols/tunnel.md", "# T\n\n## 1. A\n\nSee rsd.md §2 and §3.\n", []string{"rsd.md §3"}},
		{"table row starts over", "docs/perf.md", "| rsd.md §2 |\n| §1 |\n", []string{"has no file"}},
		{"numbered heading in a code fence does not count", "docs/protocols/tunnel.md", "# T\n\n```\n## 5. no\n```\n\n§5\n", []string{"no heading numbered 5"}},
		{"shell comment", "scripts/a.sh", "# STYLE.md §9\n", []string{"STYLE.md"}},
		{"makefile", "Makefile", "# tunnel.md §2\n", nil},
		{"string literal", "internal/deptest/x_test.go", "\tt.Errorf(\"%s imports %s, which STYLE.md §11 forbids\")\n", []string{"STYLE.md"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			for k, v := range notes {
				files[k] = v
			}
			files[tc.file] = tc.text
			var paths []string
			for k := range files {
				paths = append(paths, k)
			}
			slices.Sort(paths)
			r := newRepo(paths, func(p string) ([]byte, error) {
				if s, ok := files[p]; ok {
					return []byte(s), nil
				}
				return nil, fs.ErrNotExist
			})
			got := r.checkFile(tc.file, []byte(tc.text))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems %q, want %d matching %q", len(got), got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}
