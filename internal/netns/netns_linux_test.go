package netns

import (
	"net"
	"os"
	"syscall"
	"testing"
)

func nsInode(t *testing.T) uint64 {
	t.Helper()
	fi, err := os.Stat("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestNewDoClose(t *testing.T) {
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	here := nsInode(t)
	var inside uint64
	var ifs []net.Interface
	if err := ns.Do(func() error {
		fi, err := os.Stat("/proc/thread-self/ns/net")
		if err != nil {
			return err
		}
		inside = fi.Sys().(*syscall.Stat_t).Ino
		ifs, err = net.Interfaces()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == here {
		t.Fatal("Do ran in the caller's namespace")
	}
	// A fresh namespace has only its own loopback.
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("interfaces inside = %v; want only lo", ifs)
	}
	fi, err := ns.File().Stat()
	if err != nil || fi.Sys().(*syscall.Stat_t).Ino != inside {
		t.Fatalf("File() is not the namespace Do entered: %v", err)
	}
	// Many Do calls leave no goroutine's thread behind in the namespace.
	for range 50 {
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if nsInode(t) != here {
			t.Fatal("a thread stayed in the namespace")
		}
	}
}

func TestDoReturnsFError(t *testing.T) {
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	want := os.ErrDeadlineExceeded
	if err := ns.Do(func() error { return want }); err != want {
		t.Fatalf("Do = %v; want f's error", err)
	}
}

func TestOpen(t *testing.T) {
	self, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	var in uint64
	if err := self.Do(func() error { in = nsInode(t); return nil }); err != nil {
		t.Fatal(err)
	}
	if in != nsInode(t) {
		t.Fatal(`Open("") is not the process's namespace`)
	}
	if _, err := Open("/proc/self/ns/no-such"); err == nil {
		t.Fatal("Open of a missing path succeeded")
	}
}
