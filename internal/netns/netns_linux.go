// Package netns holds Linux network namespaces open by descriptor and runs
// code inside them. It is shared by the simulated iPhone (its USB-NCM and
// Wi-Fi links live in a namespace of their own) and by tests that need a
// throwaway namespace.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// NS is a network namespace held open by a file descriptor. An unnamed one
// (from New) disappears when the descriptor is closed and nothing else (a
// socket, an interface, a process) lives in it.
type NS struct{ f *os.File }

// New creates an empty network namespace (needs CAP_SYS_ADMIN).
func New() (*NS, error) {
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
			if f != nil {
				f.Close()
			}
			return errRestore{rerr}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: new network namespace: %w", err)
	}
	return &NS{f: f}, nil
}

// Open opens an existing namespace by path (/proc/PID/ns/net,
// /run/netns/NAME); "" is the namespace of the calling process.
func Open(path string) (*NS, error) {
	if path == "" {
		path = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("netns: network namespace: %w", err)
	}
	return &NS{f: f}, nil
}

// File is the namespace's descriptor, e.g. to hand to a child process
// (ip link … netns /proc/self/fd/N).
func (ns *NS) File() *os.File { return ns.f }

// Close releases the descriptor.
func (ns *NS) Close() error { return ns.f.Close() }

// Do runs f on an OS thread inside the namespace. Sockets, TUN devices and
// netlink sockets f creates belong to the namespace and keep working from
// any goroutine afterwards; goroutines f starts run elsewhere. Processes f
// starts (exec) start inside it.
func (ns *NS) Do(f func() error) error {
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

// errRestore means the thread could not go back to its namespace; the
// thread must then die with its goroutine rather than serve others.
type errRestore struct{ err error }

func (e errRestore) Error() string { return "netns: restore network namespace: " + e.err.Error() }

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
