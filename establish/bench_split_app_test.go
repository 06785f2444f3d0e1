//go:build linux

package establish

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
	"golang.org/x/sys/unix"
)

// BenchmarkTLSPSKSplit's tunnel rows move their bytes with an application
// that, by default, runs in a process of its own: issue 20 measures the
// CPU of the iosmux process per GiB, and an application in the same
// process had its socket calls (and the kernel's TCP work they do: the
// copy into the socket, segmentation, the TUN's transmit for the kernel
// path; the loopback socket to the forwarder for userspace) charged to
// iosmux. A real user's application (Xcode, a test runner) is never inside
// tunneld. The application process is pinned to the host's CPU, so the
// host CPU still carries both, as before; cpu-ns/B is then this process
// alone and app-cpu-ns/B the application's. -split-app=inproc runs the
// application here as before (cpu-ns/B is then both together).

var splitAppFlag = flag.String("split-app", "process", "where BenchmarkTLSPSKSplit's application runs on the tunnel rows: process (its own, on the host CPU) or inproc (in the host process)")

// -split-app-cc sets the application socket's TCP congestion control
// (TCP_CONGESTION) on the tunnel rows; empty keeps the system's default.
// With BBR the application's TCP paces its sends with a high-resolution
// timer of its own (no fq qdisc on the TUN), and those timers' softirqs are
// charged to whichever process the CPU is running when they fire: often
// the tunnel's (docs/perf.md "the application's congestion control").
var splitAppCC = flag.String("split-app-cc", "", "TCP congestion control of BenchmarkTLSPSKSplit's application socket (e.g. cubic, bbr); empty: the system default")

const splitAppEnv = "IOSMUX_SPLIT_APP"

// benchApp moves b.N BenchChunks over c, to a Sink (up) or from a Source,
// and reports cpu-ns/B and, when the application has its own process,
// app-cpu-ns/B. It owns c.
func benchApp(b *testing.B, c net.Conn, up bool, cpu int) {
	switch *splitAppFlag {
	case "inproc":
		defer c.Close()
		if up {
			testkit.BenchUp(b, c)
		} else {
			testkit.BenchDown(b, c)
		}
		return
	case "process":
	default:
		b.Fatalf("-split-app=%q: want process or inproc", *splitAppFlag)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		b.Fatalf("application conn is %T, want a TCP socket to hand over", c)
	}
	f, err := tc.File()
	c.Close()
	if err != nil {
		b.Fatal(err)
	}
	dir := "down"
	if up {
		dir = "up"
	}
	n := int64(b.N) * testkit.BenchChunk
	cmd := exec.Command(os.Args[0], "-test.run=^TestSplitAppProcess$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%s,%d", splitAppEnv, cpu, dir, n))
	cmd.ExtraFiles = []*os.File{f}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "app ") {
				lines <- sc.Text()
			}
		}
	}()
	next := func(want string) string {
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, want) {
				b.Fatalf("application process: got %q, want %q", l, want)
			}
			return l
		case <-time.After(5 * time.Minute):
			b.Fatalf("application process: no %q after 5 min", want)
		}
		return ""
	}
	next("app ready")
	b.SetBytes(testkit.BenchChunk)
	b.ResetTimer()
	cpu0 := testkit.ProcessCPU()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	done := next("app done")
	b.StopTimer()
	host := testkit.ProcessCPU() - cpu0
	// "app done cpu=N err=TEXT": TEXT may hold spaces, so it is cut off
	// first.
	cpuField, appErr, _ := strings.Cut(strings.TrimPrefix(done, "app done "), " err=")
	appCPU, err := strconv.ParseInt(strings.TrimPrefix(cpuField, "cpu="), 10, 64)
	if appErr != "" || err != nil {
		b.Fatalf("application process: %q", done)
	}
	b.ReportMetric(float64(host)/float64(n), "cpu-ns/B")
	b.ReportMetric(float64(appCPU)/float64(n), "app-cpu-ns/B")
}

// TestSplitAppProcess is benchApp's application process: it takes the
// socket as fd 3, waits for "go" on stdin, moves the bytes and prints its
// own CPU time. Without IOSMUX_SPLIT_APP it has nothing to do.
func TestSplitAppProcess(t *testing.T) {
	spec := os.Getenv(splitAppEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		t.Fatalf("%s=%q", splitAppEnv, spec)
	}
	cpu, err1 := strconv.Atoi(parts[0])
	n, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || (parts[1] != "up" && parts[1] != "down") {
		t.Fatalf("%s=%q", splitAppEnv, spec)
	}
	runtime.GOMAXPROCS(1)
	if err := pinProcess(cpu); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(3, "app-socket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Println("app ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cpu0 := testkit.ProcessCPU()
	if parts[1] == "up" {
		err = testkit.Upload(c, n)
	} else {
		err = testkit.Download(c, n)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	fmt.Printf("app done cpu=%d err=%s\n", testkit.ProcessCPU()-cpu0, msg)
}

// setAppCongestion is appDialControl for -split-app-cc: the algorithm is
// chosen before the connection starts, because one chosen later leaves the
// socket's pacing as BBR set it up.
func setAppCongestion(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, *splitAppCC)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("-split-app-cc=%s: %w", *splitAppCC, serr)
	}
	return nil
}
