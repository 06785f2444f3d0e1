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
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
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
	app := startSelf(b, "TestSplitAppProcess", fmt.Sprintf("%s=%d,%s,%d", splitAppEnv, cpu, dir, n), "app ", f)
	f.Close()
	defer app.stop()
	next := func(want string) string {
		l, ok := app.next(5 * time.Minute)
		if !ok || !strings.HasPrefix(l, want) {
			b.Fatalf("application process: got %q (ended: %v), want %q", l, !ok, want)
		}
		return l
	}
	next("app ready")
	b.SetBytes(testkit.BenchChunk)
	b.ResetTimer()
	cpu0 := testkit.ProcessCPU()
	if _, err := io.WriteString(app.stdin, "go\n"); err != nil {
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

// selfProcess is this test binary re-executed to run one test function as a
// helper process of a benchmark (the device, the application): it reads
// stdin and answers with lines on stdout that start with a prefix.
type selfProcess struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // stdout lines with the prefix, closed at EOF
	done  chan struct{} // closed once the process has been waited for
}

// startSelf starts test with env added to the environment and files as fd
// 3 and on; its stderr is ours.
func startSelf(b *testing.B, test, env, prefix string, files ...*os.File) *selfProcess {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v=false")
	cmd.Env = append(os.Environ(), env)
	cmd.ExtraFiles = files
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
	p := &selfProcess{cmd: cmd, stdin: stdin, lines: make(chan string, 8), done: make(chan struct{})}
	// One goroutine owns stdout and waits for the process only after EOF
	// (Wait closes the pipe).
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				select {
				case p.lines <- sc.Text():
				default: // nobody reads that many: drop rather than block Wait
				}
			}
		}
		close(p.lines)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
	}()
	return p
}

// next returns the next line, false when the process ended or nothing came
// within d.
func (p *selfProcess) next(d time.Duration) (string, bool) {
	select {
	case l, ok := <-p.lines:
		return l, ok
	case <-time.After(d):
		return "", false
	}
}

// stop closes stdin, which ends a helper at rest, and kills one that has
// not ended 10 s later.
func (p *selfProcess) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}
