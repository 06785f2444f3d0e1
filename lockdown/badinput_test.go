package lockdown

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// scriptedDevice runs play as lockdownd on the far end of an in-memory pipe.
func scriptedDevice(t *testing.T, play func(conn net.Conn)) *Client {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer b.Close()
		play(b)
	}()
	c := NewClient(a, ClientConfig{Timeout: 2 * time.Second})
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func readReqMsg(conn net.Conn) Message {
	b, err := readFrame(conn, 0)
	if err != nil {
		return nil
	}
	m, _ := ParseMessage(b)
	return m
}

func writeMsg(t *testing.T, conn net.Conn, m map[string]any) {
	b, err := encodeFrame(m)
	if err != nil {
		t.Error(err)
		return
	}
	conn.Write(b)
}

func TestClientBadReplies(t *testing.T) {
	tests := []struct {
		name string
		play func(t *testing.T, conn net.Conn)
		want error
	}{
		{"zero length", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			conn.Write([]byte{0, 0, 0, 0})
		}, ErrMalformed},
		{"huge length", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			conn.Write([]byte{0x7f, 0, 0, 0})
		}, ErrMalformed},
		{"garbage plist", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			conn.Write(AppendFrame(nil, []byte("<plist><dict><key>Type")))
		}, ErrMalformed},
		{"array instead of dict", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			conn.Write(AppendFrame(nil, []byte(`<plist version="1.0"><array/></plist>`)))
		}, ErrMalformed},
		{"wrong request echoed", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			writeMsg(t, conn, map[string]any{"Request": "GetValue", "Type": TypeLockdown})
		}, ErrMalformed},
		{"no Type", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			writeMsg(t, conn, map[string]any{"Request": "QueryType"})
		}, ErrMalformed},
		{"Type of the wrong kind", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			writeMsg(t, conn, map[string]any{"Request": "QueryType", "Type": 5})
		}, ErrMalformed},
		{"truncated frame", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			b, _ := encodeFrame(map[string]any{"Request": "QueryType", "Type": TypeLockdown})
			conn.Write(b[:len(b)-5])
		}, io.ErrUnexpectedEOF},
		{"hang up", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
		}, io.EOF},
		{"legacy failure", func(t *testing.T, conn net.Conn) {
			readReqMsg(conn)
			writeMsg(t, conn, map[string]any{"Request": "QueryType", "Result": "Failure"})
		}, &Error{Code: "Failure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := scriptedDevice(t, func(conn net.Conn) { tt.play(t, conn) })
			_, err := c.QueryType(testCtx(t))
			if !errors.Is(err, tt.want) {
				t.Errorf("QueryType error = %v; want %v", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "lockdown: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestClientDeviceDrops: a device that vanishes mid-session (after the
// StartSession reply, during the TLS handshake, after a request) gives a
// clear error, and the error sticks.
func TestClientDeviceDrops(t *testing.T) {
	rec, err := NewPairRecord(nil, PublicKeyPEM(&testKey(t, 0).PublicKey), "H", "B", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("before TLS", func(t *testing.T) {
		c := scriptedDevice(t, func(conn net.Conn) {
			readReqMsg(conn)
			writeMsg(t, conn, map[string]any{"Request": "StartSession", "SessionID": "S", "EnableSessionSSL": true})
		})
		_, err := c.StartSession(testCtx(t), rec)
		if err == nil || !strings.Contains(err.Error(), "TLS handshake") {
			t.Errorf("StartSession against a vanishing device: %v", err)
		}
		if _, err2 := c.QueryType(testCtx(t)); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("later call error %v; want the first error again", err2)
		}
	})
	t.Run("mid request", func(t *testing.T) {
		c := scriptedDevice(t, func(conn net.Conn) {
			readReqMsg(conn)
			conn.Write([]byte{0, 0, 1, 0}) // announce 256 bytes, send none
		})
		if _, err := c.GetValue(testCtx(t), "", ""); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GetValue against a device that drops mid-reply: %v", err)
		}
	})
}

func TestClientSilentDevice(t *testing.T) {
	c := scriptedDevice(t, func(conn net.Conn) { io.Copy(io.Discard, conn) })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.QueryType(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("QueryType against a silent device: %v; want DeadlineExceeded", err)
	}
	c2 := scriptedDevice(t, func(conn net.Conn) { io.Copy(io.Discard, conn) })
	c2.cfg.Timeout = 50 * time.Millisecond
	if _, err := c2.QueryType(context.Background()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("QueryType with only the client timeout: %v", err)
	}
}

// TestDeviceBadRequests: the device hangs up on input it cannot read and
// answers unknown requests with an error.
func TestDeviceBadRequests(t *testing.T) {
	dev, err := NewServer(ServerConfig{Values: testValues(), Key: testKey(t, 0), Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	serve := func(t *testing.T) net.Conn {
		a, b := net.Pipe()
		done := make(chan struct{})
		go func() { dev.ServeConn(b); close(done) }()
		t.Cleanup(func() { a.Close(); <-done })
		a.SetDeadline(time.Now().Add(10 * time.Second))
		return a
	}
	hangups := []struct {
		name string
		raw  []byte
	}{
		{"zero length", []byte{0, 0, 0, 0}},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff}},
		{"garbage", AppendFrame(nil, []byte("<plist><dict>"))},
		{"text plist", AppendFrame(nil, []byte("{Request=QueryType;}"))},
		{"stalled", []byte{0, 0, 0, 40, '<'}},
		{"tls hello", []byte{0x16, 0x03, 0x01, 0x00, 0x10}},
	}
	for _, tt := range hangups {
		t.Run(tt.name, func(t *testing.T) {
			conn := serve(t)
			go conn.Write(tt.raw)
			if _, err := readFrame(conn, 0); !errors.Is(err, io.EOF) {
				t.Errorf("device answered %v; want it to hang up", err)
			}
		})
	}
	t.Run("unknown request", func(t *testing.T) {
		conn := serve(t)
		c := NewClient(conn, ClientConfig{})
		if _, err := c.Request(testCtx(t), map[string]any{"Request": "Frobnicate"}); !errors.Is(err, &Error{Code: CodeInvalidRequest}) {
			t.Errorf("unknown request: %v", err)
		}
		// The connection survives a refused request.
		if typ, err := c.QueryType(testCtx(t)); err != nil || typ != TypeLockdown {
			t.Errorf("QueryType after a refused request = %q, %v", typ, err)
		}
		if _, err := c.StartService(testCtx(t), CoreDeviceProxy, nil); !errors.Is(err, &Error{Code: CodeSessionInactive}) {
			t.Errorf("StartService without a session: %v", err)
		}
		if err := c.SetValue(testCtx(t), "", "DeviceName", "x"); !errors.Is(err, &Error{Code: CodeSetProhibited}) {
			t.Errorf("SetValue without a session: %v", err)
		}
	})
}
