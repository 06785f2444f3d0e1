package testkit

import (
	"fmt"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// NetNS is a throwaway network namespace held open by a file descriptor. It
// has no name in /run/netns and disappears when the descriptor is closed and
// nothing else (a socket, a TUN device) lives in it.
type NetNS struct {
	fd int
}

// NewNetNS creates a network namespace for the test and closes it at
// cleanup. It needs root (CAP_SYS_ADMIN); without it the test fails.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	var fd int
	err := onLockedThread(func() error {
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if rerr := unix.Setns(orig, unix.CLONE_NEWNET); rerr != nil {
			return errRestore{rerr}
		}
		return err
	})
	if err != nil {
		t.Fatalf("testkit: new network namespace: %v", err)
	}
	ns := &NetNS{fd: fd}
	t.Cleanup(func() { unix.Close(ns.fd) })
	return ns
}

// Do runs f on an OS thread that is inside the namespace. Sockets, TUN
// devices and netlink sockets that f creates belong to the namespace and keep
// working from any goroutine afterwards. Goroutines that f starts do not run
// inside the namespace.
func (ns *NetNS) Do(f func() error) error {
	return onLockedThread(func() error {
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("setns: %w", err)
		}
		ferr := f()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			return errRestore{err}
		}
		return ferr
	})
}

// errRestore means the thread could not go back to its namespace; the thread
// must then die with its goroutine rather than serve other goroutines.
type errRestore struct{ err error }

func (e errRestore) Error() string { return "testkit: restore network namespace: " + e.err.Error() }

// onLockedThread runs f on a fresh goroutine locked to its thread. If f
// leaves the thread in a foreign namespace (errRestore), the goroutine exits
// still locked, and the runtime then terminates that thread.
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
