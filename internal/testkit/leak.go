package testkit

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LeakGrace is how long CheckLeaks waits for goroutines and descriptors to
// go away before it reports them: teardown may finish asynchronously (a
// closed socket's poller, a stack's timer goroutine).
var LeakGrace = 10 * time.Second

// CheckLeaks fails t if goroutines, or on Linux file descriptors, that did not
// exist when CheckLeaks was called still exist when the test ends. Call it
// first in the test so that its cleanup runs after every other cleanup. Not
// for parallel tests: it cannot tell their goroutines from this test's.
//
// ignore lists substrings of goroutine stacks to disregard (for example a
// library's process-wide worker that is started once and never stops).
func CheckLeaks(t testing.TB, ignore ...string) {
	t.Helper()
	warmUp()
	gBase := goroutineIDs()
	fdBase := openFDs()
	t.Cleanup(func() {
		var extraG []string
		var extraFD []string
		end := time.Now().Add(LeakGrace)
		for {
			extraG = newGoroutines(gBase, ignore)
			extraFD = newFDs(fdBase)
			if len(extraG) == 0 && len(extraFD) == 0 || time.Now().After(end) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, g := range extraG {
			t.Errorf("testkit: leaked goroutine:\n%s", g)
		}
		for _, fd := range extraFD {
			t.Errorf("testkit: leaked file descriptor %s", fd)
		}
	})
}

// warmUp makes the runtime create its process-wide descriptors (the network
// poller) before the baseline is taken, so they are not reported as leaks.
func warmUp() {
	if r, w, err := os.Pipe(); err == nil {
		_ = r.SetReadDeadline(time.Now())
		r.Close()
		w.Close()
	}
}

// stacks returns every goroutine's stack, one string each.
func stacks() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if s := strings.TrimSpace(string(g)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// goroutineID parses "goroutine 123 [state]:".
func goroutineID(stack string) (int, bool) {
	rest, ok := strings.CutPrefix(stack, "goroutine ")
	if !ok {
		return 0, false
	}
	i := strings.IndexByte(rest, ' ')
	if i < 0 {
		return 0, false
	}
	id, err := strconv.Atoi(rest[:i])
	return id, err == nil
}

func goroutineIDs() map[int]bool {
	ids := map[int]bool{}
	for _, s := range stacks() {
		if id, ok := goroutineID(s); ok {
			ids[id] = true
		}
	}
	return ids
}

// benign are stacks that belong to the test runner or the runtime, not to
// the code under test.
var benign = []string{
	"testing.(*T).Run(",
	"testing.tRunner(",
	"testing.runFuzzing(",
	"runtime.goexit1",
	"os/signal.signal_recv",
	"runtime.ensureSigM",
}

func newGoroutines(base map[int]bool, ignore []string) []string {
	var out []string
	for _, s := range stacks() {
		id, ok := goroutineID(s)
		if !ok || base[id] {
			continue
		}
		if containsAny(s, benign) || containsAny(s, ignore) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// openFDs maps each open descriptor to what it points at; nil where the
// platform has no /proc/self/fd.
func openFDs() map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := map[string]string{}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // closed between ReadDir and Readlink, or the dir's own fd
		}
		fds[e.Name()] = target
	}
	return fds
}

func newFDs(base map[string]string) []string {
	if base == nil {
		return nil
	}
	var out []string
	for fd, target := range openFDs() {
		if old, ok := base[fd]; ok && old == target {
			continue
		}
		if strings.HasPrefix(target, "/proc/") && strings.HasSuffix(target, "/fd") {
			continue // ReadDir's own descriptor
		}
		out = append(out, fmt.Sprintf("%s -> %s", fd, target))
	}
	sort.Strings(out)
	return out
}
