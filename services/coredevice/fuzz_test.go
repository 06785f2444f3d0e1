package coredevice

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// seedVectors adds every testdata vector's bytes to f.
func seedVectors(f *testing.F) {
	names, _ := filepath.Glob("testdata/cd*.hex")
	for _, n := range names {
		raw, _ := vector(f, filepath.Base(n[:len(n)-len(".hex")]))
		f.Add(raw)
	}
	if len(names) == 0 {
		f.Fatal("no vectors")
	}
}

// FuzzDeviceEnvelope is the device role's decoder: any message bytes are
// decoded, parsed as a request and answered by a server without panicking,
// and every answer is a reply the host role can read.
func FuzzDeviceEnvelope(f *testing.F) {
	seedVectors(f)
	s := echoServer()
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := xpc.Decode(b)
		if err != nil {
			return
		}
		req, err := ParseRequest(m.Body)
		if err == nil {
			req.Body()
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // "wait" must not block
		reply := s.Answer(ctx, m.Body)
		if _, err := ParseReply(reply); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("answer %v is not a reply: %v", reply, err)
			}
		}
	})
}

// FuzzHostReply is the host role's decoder: any message bytes are read as
// a reply without panicking; an error reply re-encodes to an error reply.
func FuzzHostReply(f *testing.F) {
	seedVectors(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := xpc.Decode(b)
		if err != nil || m.Body == nil {
			return
		}
		_, err = ParseReply(m.Body)
		if e, ok := err.(*Error); ok {
			if _, err2 := ParseReply(e.Body()); err2 == nil {
				t.Fatalf("error %v re-encoded as success", e)
			}
			_ = e.Error()
		}
	})
}
