package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletion sources `iosmux completion bash` in bash, as a user's
// shell does (with the bash-completion package, which scripts/setup.sh
// installs), and completes commands, flags and flag values. The test
// binary plays iosmux (TestMain), reached through PATH as the script
// expects.
func TestBashCompletion(t *testing.T) {
	const lib = "/usr/share/bash-completion/bash_completion"
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("bash-completion is not installed (scripts/setup.sh installs it): %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "iosmux")); err != nil {
		t.Fatal(err)
	}
	script := `
source ` + lib + `
src=$(iosmux completion bash) || exit 3
source <(printf '%s\n' "$src") || exit 4
declare -F __start_iosmux >/dev/null || { echo "no __start_iosmux"; exit 5; }
complete -p iosmux
try() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
  read -ra COMP_WORDS <<<"$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  __start_iosmux iosmux "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}" 2>/dev/null
  echo "== $1"
  printf "%s\n" "${COMPREPLY[@]}"
}
try "iosmux st"
try "iosmux start-tunnel --pro"
try "iosmux start-tunnel --protocol "
try "iosmux pair "
try "iosmux tunneld --log-level "
try "iosmux sim --profile "
`
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "IOSMUX_TEST_AS_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := map[string][]string{}
	var cur string
	for _, l := range strings.Split(string(out), "\n") {
		if h, ok := strings.CutPrefix(l, "== "); ok {
			cur = h
			continue
		}
		if cur != "" && l != "" {
			got[cur] = append(got[cur], strings.Fields(l)[0])
		}
	}
	for line, want := range map[string][]string{
		"iosmux st":                       {"start-tunnel"},
		"iosmux start-tunnel --pro":       {"--protocol"},
		"iosmux start-tunnel --protocol ": {"tcp", "quic"},
		"iosmux pair ":                    {"list", "forget", "import"},
		"iosmux tunneld --log-level ":     {"debug", "info", "warn", "error"},
		"iosmux sim --profile ":           {"17.0", "27.2"},
	} {
		for _, w := range want {
			if !contains(got[line], w) {
				t.Errorf("completing %q: %q not offered (got %q)\n%s", line, w, got[line], out)
			}
		}
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
