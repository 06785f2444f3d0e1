// Package coredevicetest holds what the CoreDevice services' tests share:
// reading the XPC message vectors of a package's testdata, and an
// in-memory device answering a client's requests. Only tests import it.
package coredevicetest

import (
	"context"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// Vector reads testdata/NAME.hex, one XPC message as lower-case hex, and
// returns its bytes and the decoded message.
func Vector(t testing.TB, name string) ([]byte, xpc.Message) {
	t.Helper()
	h, err := os.ReadFile("testdata/" + name + ".hex")
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m, err := xpc.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b, m
}

// Device returns a ClientConfig.Open function whose every connection is
// served in memory: each request gets answer's reply body. The
// connections end at the test's cleanup.
func Device(t testing.TB, answer func(ctx context.Context, req xpc.Message) *xpc.Dict) func(ctx context.Context) (*xpc.Conn, error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func(cctx context.Context) (*xpc.Conn, error) {
		a, b := net.Pipe()
		wg.Go(func() {
			defer b.Close()
			conn, err := xpc.Server(ctx, b, nil)
			if err != nil {
				return
			}
			defer conn.Close()
			for {
				m, _, err := conn.Receive(ctx)
				if err != nil {
					return
				}
				conn.Reply(ctx, m, answer(ctx, m))
			}
		})
		return xpc.Client(cctx, a, nil)
	}
}
