package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func TestNotify(t *testing.T) {
	if err := Notify("", Ready); err != nil {
		t.Errorf("without a socket: %v", err)
	}
	for _, tt := range []struct{ name, listen, env string }{
		{"path", filepath.Join(t.TempDir(), "notify"), ""},
		{"abstract", "\x00iosmux-sdnotify-test-" + strconv.Itoa(os.Getpid()), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tt.listen, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			env := tt.listen
			if env[0] == 0 {
				env = "@" + env[1:]
			}
			if err := Notify(env, Ready+"\nSTATUS=serving"); err != nil {
				t.Fatal(err)
			}
			pc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 256)
			n, err := pc.Read(b)
			if err != nil || string(b[:n]) != "READY=1\nSTATUS=serving" {
				t.Errorf("systemd got %q, %v", b[:n], err)
			}
		})
	}
	if err := Notify(filepath.Join(t.TempDir(), "nobody"), Ready); err == nil {
		t.Error("no error for a socket nobody listens on")
	}
}
