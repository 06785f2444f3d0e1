package lockdown

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// shimCtx bounds a shim test's exchanges.
func shimCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestShimCheckin(t *testing.T) {
	a, b := net.Pipe()
	type res struct {
		req *CheckinRequest
		err error
	}
	srv := make(chan res, 1)
	go func() {
		c, req, err := ShimServer(shimCtx(t), b, "com.apple.afc.shim.remote")
		if err == nil {
			var v map[string]any
			err = c.Receive(shimCtx(t), &v)
			if err == nil && v["Request"] != "Ping" {
				err = errors.New("wrong service message")
			}
		}
		srv <- res{req, err}
	}()
	c, err := ShimClient(shimCtx(t), a, "com.apple.afc.shim.remote", "iosmux", []byte{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(shimCtx(t), map[string]string{"Request": "Ping"}); err != nil {
		t.Fatal(err)
	}
	r := <-srv
	if r.err != nil || r.req.Label != "iosmux" || r.req.ProtocolVersion != "2" || !bytes.Equal(r.req.EscrowBag, []byte{1, 2}) {
		t.Fatalf("server saw %+v, %v", r.req, r.err)
	}
}

func TestShimRejected(t *testing.T) {
	a, b := net.Pipe()
	go RejectCheckin(shimCtx(t), b, "x.shim.remote", "EscrowFailure", "locked")
	_, err := ShimClient(shimCtx(t), a, "x.shim.remote", "iosmux", nil)
	var ce *CheckinError
	if !errors.As(err, &ce) || ce.Err != "EscrowFailure" || ce.Description != "locked" {
		t.Fatalf("got %v", err)
	}
}

func TestShimBadInput(t *testing.T) {
	for name, script := range map[string]string{
		"oversized": "7fffffff",
		"zero":      "00000000",
		"garbage":   "00000004" + "61626364",
		"truncated": "00000010" + "3c3f",
	} {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() {
				var req map[string]any
				NewPlistConn(b, DefaultMaxShimPlist).Receive(context.Background(), &req)
				raw, _ := hex.DecodeString(script)
				b.Write(raw)
				b.Close()
			}()
			_, err := ShimClient(shimCtx(t), a, "x.shim.remote", "iosmux", nil)
			if err == nil || !strings.Contains(err.Error(), "x.shim.remote") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestShimDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	go func() { var v map[string]any; NewPlistConn(b, DefaultMaxShimPlist).Receive(context.Background(), &v) }()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := ShimClient(ctx, a, "x.shim.remote", "iosmux", nil)
	if err == nil || !strings.Contains(err.Error(), "RSDCheckin reply") {
		t.Fatalf("got %v", err)
	}
}

// TestShimRepliesInOneWrite: both checkin replies leave in one write, so a
// host that reads the first and then takes the stream raw (appium's
// syslog text mode) never sees the second in its data.
func TestShimRepliesInOneWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go ShimServer(shimCtx(t), b, "com.apple.syslog_relay.shim.remote")
	NewPlistConn(a, 0).Send(shimCtx(t), map[string]any{"Label": "x", "ProtocolVersion": "2", "Request": "RSDCheckin"})
	// net.Pipe hands over one Write per Read (up to the buffer's size).
	buf := make([]byte, 64<<10)
	n, err := a.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	first, rest, err := ParseFrame(buf[:n], 0)
	if err != nil {
		t.Fatal(err)
	}
	second, rest, err := ParseFrame(rest, 0)
	if err != nil || len(rest) != 0 {
		t.Fatalf("one read held %d bytes, not both replies whole: %v", n, err)
	}
	if !bytes.Contains(first, []byte("RSDCheckin")) || !bytes.Contains(second, []byte("StartService")) {
		t.Errorf("replies %q, %q", first, second)
	}
}
