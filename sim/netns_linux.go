package sim

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netNS is a network namespace held open by a file descriptor; it has no
// name and disappears when the descriptor is closed and nothing lives in it.
type netNS struct{ f *os.File }

// newNetNS creates an empty network namespace (needs CAP_SYS_ADMIN).
func newNetNS() (*netNS, error) {
	var f *os.File
	err := onLockedThread(func() error {
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w (needs root)", err)
		}
		f, err = os.Open("/proc/thread-self/ns/net")
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			return errRestore{rerr}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sim: new network namespace: %w", err)
	}
	return &netNS{f: f}, nil
}

// openNetNS opens an existing namespace by path; "" is the namespace of
// the calling process.
func openNetNS(path string) (*netNS, error) {
	if path == "" {
		path = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim: network namespace: %w", err)
	}
	return &netNS{f: f}, nil
}

func (ns *netNS) close() error { return ns.f.Close() }

// do runs f on an OS thread inside the namespace. Sockets f opens belong to
// the namespace and keep working from any goroutine; goroutines f starts
// run elsewhere. Processes started by f (exec) start inside it.
func (ns *netNS) do(f func() error) error {
	return onLockedThread(func() error {
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return errRestore{err}
		}
		return ferr
	})
}

// ip runs the ip(8) command inside the namespace; extra files are the
// child's descriptors 3, 4, ….
func (ns *netNS) ip(extra []*os.File, args ...string) error {
	return ns.do(func() error {
		cmd := exec.Command("ip", args...)
		cmd.ExtraFiles = extra
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}

// errRestore: the thread could not return to its namespace and must die
// with its goroutine rather than serve others.
type errRestore struct{ err error }

func (e errRestore) Error() string { return "sim: restore network namespace: " + e.err.Error() }

func onLockedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := f()
		if _, bad := err.(errRestore); !bad {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
