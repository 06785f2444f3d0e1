package xpc

import (
	"context"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzServerFrames feeds arbitrary bytes after the client preface to a
// Server: it must end with an error or a working Conn, never panic or hang,
// and never buffer more than its bounds allow.
func FuzzServerFrames(f *testing.F) {
	for _, name := range []string{"h2_client_init_1MiB.hex", "h2_client_init_pymobiledevice3_default.hex"} {
		b, err := hexFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[24:]) // without the preface
	}
	preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := bufPipe(1 << 20)
		done := make(chan *Conn, 1)
		go func() {
			c, _ := Server(context.Background(), b, &Config{Decode: DecodeOptions{MaxBody: 1 << 16}, MaxQueued: 1 << 16})
			done <- c
		}()
		go func() {
			// Drain what the server writes so it never blocks on us.
			buf := make([]byte, 4096)
			for {
				if _, err := a.Read(buf); err != nil {
					return
				}
			}
		}()
		a.Write(preface)
		a.Write(in)
		a.Close()
		select {
		case c := <-done:
			if c != nil {
				c.Close()
			}
		case <-time.After(10 * time.Second):
			t.Fatal("server hung on input")
		}
	})
}

func hexFile(name string) ([]byte, error) {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(strings.TrimSpace(string(b)))
}
