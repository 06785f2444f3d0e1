package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iosmux/iosmux/internal/runfile"
)

// tunneld -d: Go cannot fork, so the command runs itself again in a new
// session without -d, its output in a log file, and waits until that copy
// serves (or dies) before returning. Parent and child talk over a pipe the
// child gets as descriptor 3 (named by IOSMUX_DAEMON_CHILD, with the pid
// file's path): one line, "READY <api address>" or "ERROR <message>".
// The pid and log files live in a private runtime folder and are opened
// without following links (internal/runfile); the child holds a lock on
// the pid file for its life, so a second daemon on the same pid file is
// refused and a crashed one leaves nothing that blocks the next.

const daemonChildEnv = "IOSMUX_DAEMON_CHILD"

// daemonReadyWait bounds the parent's wait for the child to serve
// (simulated iPhones, keys to generate: tens of seconds on a slow machine).
const daemonReadyWait = 3 * time.Minute

// daemonFiles are the runtime files of a tunneld on port.
func daemonFiles(a *app, port int) (dir, pidPath, logPath string, err error) {
	dir = runfile.RuntimeDir(a.getenv("XDG_RUNTIME_DIR"))
	if err := runfile.PrivateDir(dir); err != nil {
		return "", "", "", err
	}
	base := "tunneld-" + strconv.Itoa(port)
	return dir, filepath.Join(dir, base+".pid"), filepath.Join(dir, base+".log"), nil
}

// daemonizeTunneld starts the background copy and reports how it went.
func daemonizeTunneld(ctx context.Context, a *app, host string, port int) error {
	_, pidPath, logPath, err := daemonFiles(a, port)
	if err != nil {
		return err
	}
	if pid, held := runfile.Holder(pidPath); held {
		return fmt.Errorf("tunneld is already running in the background (pid %d, pid file %s, log %s): stop it with 'kill %d' or 'curl http://%s/shutdown'", pid, pidPath, logPath, pid, apiHostPort(host, port))
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := runfile.OpenLog(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, withoutDaemonFlag(a.args)...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w} // descriptor 3
	cmd.Env = append(os.Environ(), daemonChildEnv+"="+pidPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting tunneld in the background: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(r, 4096)).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	timer := time.NewTimer(daemonReadyWait)
	defer timer.Stop()
	var msg string
	select {
	case msg = <-line:
	case <-timer.C:
		msg = "ERROR it did not start serving within " + daemonReadyWait.String()
	case <-ctx.Done():
		msg = "ERROR interrupted while it started"
	}
	switch {
	case strings.HasPrefix(msg, "READY "):
		fmt.Fprintf(a.stdout, "tunneld is running in the background: pid %d, API http://%s/\nlog %s, pid file %s\n",
			cmd.Process.Pid, strings.TrimPrefix(msg, "READY "), logPath, pidPath)
		return nil
	case strings.HasPrefix(msg, "ERROR "):
		cmd.Process.Signal(syscall.SIGTERM)
		waitExit(exited)
		return fmt.Errorf("tunneld did not start: %s (log %s)", strings.TrimPrefix(msg, "ERROR "), logPath)
	}
	// The pipe closed without a word: the child died.
	status := waitExit(exited)
	return fmt.Errorf("tunneld exited before serving (%v): %s (log %s)", status, lastLine(logPath), logPath)
}

// waitExit waits a little for the child's exit status.
func waitExit(exited <-chan error) error {
	select {
	case err := <-exited:
		if err == nil {
			return errors.New("exit status 0")
		}
		return err
	case <-time.After(10 * time.Second):
		return errors.New("still running")
	}
}

// lastLine is the last non-empty line of the log (the child's error).
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// withoutDaemonFlag drops -d/--daemonize from the arguments.
func withoutDaemonFlag(args []string) []string {
	var out []string
	for _, s := range args {
		switch s {
		case "-d", "--daemonize", "-daemonize", "--daemonize=true", "-d=true":
			continue
		}
		out = append(out, s)
	}
	return out
}

func apiHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// daemonChild is the background copy's side: it holds the pid file and
// tells the parent how the start went. A zero daemonChild (not started by
// -d) does nothing.
type daemonChild struct {
	pipe *os.File
	lock *runfile.Lock
}

// startDaemonChild takes the pid file when this process is a background
// copy; a pid file held by a live process fails it (a second daemon).
func startDaemonChild(a *app) (*daemonChild, error) {
	pidPath := a.getenv(daemonChildEnv)
	if pidPath == "" {
		return &daemonChild{}, nil
	}
	c := &daemonChild{pipe: os.NewFile(3, "daemon-ready")}
	l, err := runfile.TryLock(pidPath)
	if err != nil {
		if errors.Is(err, runfile.ErrLocked) {
			err = fmt.Errorf("another tunneld is running in the background (%w)", err)
		}
		c.fail(err)
		return nil, err
	}
	c.lock = l
	return c, nil
}

// ready tells the parent the APIs serve at addr.
func (c *daemonChild) ready(addr string) {
	if c.pipe != nil {
		fmt.Fprintf(c.pipe, "READY %s\n", addr)
		c.pipe.Close()
		c.pipe = nil
	}
}

// fail tells the parent why the start failed (once; after ready it is too
// late, the log has it).
func (c *daemonChild) fail(err error) {
	if c.pipe != nil && err != nil {
		fmt.Fprintf(c.pipe, "ERROR %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		c.pipe.Close()
		c.pipe = nil
	}
}

// done removes the pid file at exit.
func (c *daemonChild) done() {
	if c.lock != nil {
		c.lock.Release(true)
	}
}
