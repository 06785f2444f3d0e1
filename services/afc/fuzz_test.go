package afc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

func seedVectors(f *testing.F) {
	for i := 1; i <= 19; i++ {
		f.Add(vector(f, "afc"+twoDigits(i)))
	}
}

// FuzzParsePacket: the packet and key/value decoders never panic, and
// what parses re-encodes to the same bytes.
func FuzzParsePacket(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePacket(b, 1<<20)
		if err != nil {
			return
		}
		if got := p.Append(nil); !bytes.Equal(got, b) {
			t.Fatalf("re-encoded %x, want %x", got, b)
		}
		if kv, err := ParseKV(p.Data); err == nil {
			kv2, err := ParseKV(kv.Append(nil))
			if err != nil || len(kv2) != len(kv) {
				t.Fatalf("key/value round trip: %v, %d vs %d pairs", err, len(kv2), len(kv))
			}
		}
		ParseFileInfo(p.Data)
		ParseDeviceInfo(p.Data)
		parseNames(p.Data)
	})
}

// FuzzClientReplies: whatever a device sends back, the host role fails
// cleanly and promptly: no panic, no hang, no unbounded allocation.
func FuzzClientReplies(f *testing.F) {
	seedVectors(f)
	f.Add(append(vector(f, "afc08"), vector(f, "afc12")...))
	f.Fuzz(func(t *testing.T, b []byte) {
		host, dev := testkit.Pipe()
		c := NewClient(host, &ClientConfig{Timeout: 200 * time.Millisecond, MaxReply: 1 << 20, ChunkSize: 4096, Window: 2})
		go func() {
			dev.Write(b)
			dev.Close()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c.ReadDir(ctx, "/")
		c.Stat(ctx, "/x")
		var out bytes.Buffer
		c.ReadFile(ctx, "/x", &out, nil)
		c.DeviceInfo(ctx)
		c.Close()
	})
}

// FuzzServerRequests: whatever a host sends, the device role answers or
// hangs up without panicking, and never touches anything outside its
// tree.
func FuzzServerRequests(f *testing.F) {
	seedVectors(f)
	f.Add(Packet{Num: 1, Op: OpMakeLink, Args: appendPath(appendPath(le64(2), "/"), "DCIM/up")}.Append(nil))
	f.Add(Packet{Num: 1, Op: OpFileOpen, Args: appendPath(le64(4), "DCIM/up/x")}.Append(nil))
	base := f.TempDir()
	root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
	os.MkdirAll(filepath.Join(root, "DCIM"), 0o755)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "secret"), []byte("SECRET"), 0o644)
	before := hashTree(f, outside)
	srv, _ := NewServer(ServerConfig{Root: root, MaxWrite: 1 << 20, Timeout: 200 * time.Millisecond})
	f.Fuzz(func(t *testing.T, b []byte) {
		host, dev := testkit.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(context.Background(), dev); dev.Close() }()
		host.Write(b)
		host.(interface{ CloseWrite() error }).CloseWrite()
		host.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			if _, err := host.Read(buf); err != nil {
				break
			}
		}
		host.Close()
		<-done
		if hashTree(t, outside) != before {
			t.Fatal("a request changed the folder outside the tree")
		}
	})
}
