package usbmux

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"howett.net/plist"
)

// scriptedMux returns a client whose every dial reaches play, which acts
// as usbmuxd on the far end of an in-memory pipe.
func scriptedMux(t *testing.T, play func(conn net.Conn)) *Client {
	t.Helper()
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer b.Close()
			play(b)
		}()
		t.Cleanup(func() { a.Close(); <-done })
		return a, nil
	}
	return NewClient(ClientConfig{Dial: dial, Timeout: 2 * time.Second})
}

// readReq reads one request as usbmuxd would.
func readReq(conn net.Conn) (Header, bool) {
	h, _, err := readPacket(conn, 0)
	return h, err == nil
}

func rawPlist(t *testing.T, v any) []byte {
	t.Helper()
	b, err := plist.Marshal(v, plist.XMLFormat)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientBadReplies(t *testing.T) {
	okList := rawPlist(t, deviceListReply{DeviceList: []*reply{}})
	tests := []struct {
		name string
		play func(t *testing.T, conn net.Conn)
		want error // errors.Is target; nil means any error
	}{
		{"length below header", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(Header{Length: 8, Version: 1, Message: 8, Tag: h.Tag}.Append(nil))
		}, ErrMalformed},
		{"length over limit", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(Header{Length: 64 << 20, Version: 1, Message: 8, Tag: h.Tag}.Append(nil))
		}, ErrMalformed},
		{"garbage plist", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, []byte("<plist><dict><key>Devi")))
		}, ErrMalformed},
		{"text plist", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, []byte("hello")))
		}, ErrMalformed},
		{"binary protocol reply", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(Header{Length: 20, Version: 0, Message: MessageResult, Tag: h.Tag}.Append(nil))
			conn.Write([]byte{0, 0, 0, 0})
		}, ErrMalformed},
		{"wrong tag", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag+7, okList))
		}, ErrMalformed},
		{"no DeviceList", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, rawPlist(t, map[string]any{"Foo": 1})))
		}, ErrMalformed},
		{"entry without Properties", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, rawPlist(t, map[string]any{"DeviceList": []any{map[string]any{"DeviceID": 1}}})))
		}, ErrMalformed},
		{"wrong value type", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, rawPlist(t, map[string]any{"DeviceList": "nope"})))
		}, ErrMalformed},
		{"truncated payload", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			pkt := AppendPacket(nil, h.Tag, okList)
			conn.Write(pkt[:len(pkt)-10])
		}, io.ErrUnexpectedEOF},
		{"hang up", func(t *testing.T, conn net.Conn) {
			readReq(conn)
		}, io.EOF},
		{"result instead of list", func(t *testing.T, conn net.Conn) {
			h, _ := readReq(conn)
			conn.Write(AppendPacket(nil, h.Tag, rawPlist(t, resultReply(ResultBadVersion))))
		}, &ResultError{Code: ResultBadVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := scriptedMux(t, func(conn net.Conn) { tt.play(t, conn) })
			_, err := c.ListDevices(testCtx(t))
			if err == nil {
				t.Fatal("ListDevices succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("ListDevices error = %v; want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "usbmux: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestClientSilentPeer: a usbmuxd that accepts and never answers costs the
// caller its context deadline, not a hang.
func TestClientSilentPeer(t *testing.T) {
	c := scriptedMux(t, func(conn net.Conn) {
		readReq(conn)
		io.Copy(io.Discard, conn)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.ReadBUID(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadBUID against a silent peer: %v; want DeadlineExceeded", err)
	}
	// The client's own timeout bounds a call whose context has none.
	c.cfg.Timeout = 50 * time.Millisecond
	if _, err := c.ReadBUID(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("ReadBUID with only the client timeout: %v; want ErrDeadlineExceeded", err)
	}
}

func TestClientNoDaemon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	c := NewClient(ClientConfig{Addr: Addr{Net: "unix", Path: path}})
	_, err := c.ListDevices(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("ListDevices without usbmuxd: %v; want an error naming %s", err, path)
	}
}

// TestServerBadRequests drives the server with broken clients; it must
// answer or hang up, and keep serving others.
func TestServerBadRequests(t *testing.T) {
	srv := NewServer(ServerConfig{Timeout: 100 * time.Millisecond})
	c, path := startServer(t, srv)
	ctx := testCtx(t)

	exchange := func(t *testing.T, raw []byte) (Header, *reply, error) {
		t.Helper()
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write(raw)
		h, payload, err := readPacket(conn, 0)
		if err != nil {
			return h, nil, err
		}
		r, err := parseReply(payload)
		return h, r, err
	}
	t.Run("unknown command", func(t *testing.T) {
		h, r, err := exchange(t, AppendPacket(nil, 42, rawPlist(t, map[string]any{"MessageType": "Frobnicate"})))
		if err != nil || h.Tag != 42 {
			t.Fatalf("reply %v tag %d", err, h.Tag)
		}
		if code, ok := r.result(); !ok || code != ResultBadCommand {
			t.Errorf("result = %v %v; want bad command", code, ok)
		}
	})
	t.Run("binary protocol", func(t *testing.T) {
		_, r, err := exchange(t, Header{Length: 16, Version: 0, Message: MessageListen, Tag: 3}.Append(nil))
		if err != nil {
			t.Fatal(err)
		}
		if code, _ := r.result(); code != ResultBadVersion {
			t.Errorf("result = %v; want bad version", code)
		}
	})
	hangups := []struct {
		name string
		raw  []byte
	}{
		{"short length", Header{Length: 3, Version: 1, Message: 8}.Append(nil)},
		{"huge length", Header{Length: 0xFFFFFFF0, Version: 1, Message: 8}.Append(nil)},
		{"no MessageType", AppendPacket(nil, 1, rawPlist(t, map[string]any{"Foo": "bar"}))},
		{"malformed plist", AppendPacket(nil, 1, []byte("<plist><dict><key>"))},
		{"text plist", AppendPacket(nil, 1, []byte("{ MessageType = Listen; }"))},
		{"stalled payload", Header{Length: 100, Version: 1, Message: 8}.Append(nil)},
	}
	for _, tt := range hangups {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := exchange(t, tt.raw); !errors.Is(err, io.EOF) {
				t.Errorf("server answered %v; want it to hang up", err)
			}
		})
	}
	// The server still serves well-behaved clients.
	if _, err := c.ListDevices(ctx); err != nil {
		t.Errorf("ListDevices after bad clients: %v", err)
	}
}
