package rsd_test

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	goios "github.com/danielpaulus/go-ios/ios"
	goxpc "github.com/danielpaulus/go-ios/ios/xpc"
	"github.com/google/uuid"

	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// TestGoIOSRSDClient: go-ios's RSD client (its h2 layer, XPC set-up and
// Handshake reader) completes a handshake against our server.
func TestGoIOSRSDClient(t *testing.T) {
	_, port := startServer(t)
	done := make(chan struct{})
	var resp goios.RsdHandshakeResponse
	var err error
	go func() {
		defer close(done)
		var s goios.RsdService
		s, err = goios.NewWithAddrPort("127.0.0.1", port)
		if err != nil {
			return
		}
		defer s.Close()
		resp, err = s.Handshake()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("go-ios handshake hung")
	}
	if err != nil {
		t.Fatalf("go-ios: %v", err)
	}
	if resp.Udid != "222222222" {
		t.Errorf("go-ios read UDID %q", resp.Udid)
	}
	got := map[string]int{}
	for name, e := range resp.Services {
		got[name] = int(e.Port)
	}
	wantServices(t, got)
}

// TestGoIOSDecodesOurMessages: go-ios's DecodeMessage reads what our encoder
// writes, with the same values and Go types.
func TestGoIOSDecodesOurMessages(t *testing.T) {
	srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
	if err != nil {
		t.Fatal(err)
	}
	u := mustUUID(t, "6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	when := time.Unix(0, 1700000000123000000)
	msgs := []*xpc.Message{
		{Flags: xpc.FlagsMsg, ID: rsd.DeviceMessageID, Body: srv.HandshakeBody()},
		{Flags: xpc.FlagsRequest, ID: 9, Body: xpc.NewDict(
			"i", xpc.Int64(-5), "u", xpc.Uint64(math.MaxUint64), "d", xpc.Double(1.5), "b", xpc.Bool(true),
			"s", xpc.String("héllo"), "data", xpc.Data{1, 2, 3}, "uuid", u, "date", xpc.DateOf(when),
			"arr", xpc.Array{xpc.Uint64(1), xpc.String("x"), xpc.NewDict()}, "null", xpc.Null{},
			"ft", xpc.NewFileTransfer(1, 1234))},
		{Flags: xpc.FlagsHeader, Body: xpc.NewDict()},
		{Flags: xpc.FlagsPingMsg},
	}
	for i, m := range msgs {
		b, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		gm, err := goxpc.DecodeMessage(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("message %d: go-ios: %v", i, err)
		}
		if gm.Flags != uint32(m.Flags) {
			t.Errorf("message %d: flags %#x", i, gm.Flags)
		}
		if m.Body == nil {
			if gm.Body != nil {
				t.Errorf("message %d: go-ios saw a body", i)
			}
			continue
		}
		if err := sameAsGoIOS(m.Body, gm.Body); err != "" {
			t.Errorf("message %d: %s", i, err)
		}
	}
	// Spot checks of go-ios's own Go types.
	b, _ := msgs[1].AppendBinary(nil)
	gm, _ := goxpc.DecodeMessage(bytes.NewReader(b))
	if gm.Body["i"] != int64(-5) || gm.Body["u"] != uint64(math.MaxUint64) || gm.Body["uuid"] != uuid.UUID(u) ||
		!gm.Body["date"].(time.Time).Equal(when) || gm.Body["ft"].(goxpc.FileTransfer).TransferSize != 1234 {
		t.Errorf("go-ios values: %v", gm.Body)
	}
}

// TestWeDecodeGoIOSMessages: our decoder reads what go-ios's encoder writes,
// including its short array length.
func TestWeDecodeGoIOSMessages(t *testing.T) {
	u := uuid.MustParse("6f1d0e8a-3b2c-4d5e-8f90-a1b2c3d4e5f6")
	when := time.Unix(0, 1700000000123000000)
	body := map[string]interface{}{
		"i": int64(-5), "u": uint64(math.MaxUint64), "d": 1.5, "b": true, "s": "héllo",
		"data": []byte{1, 2, 3}, "uuid": u, "date": when, "null": nil,
		"arr":  []interface{}{uint64(1), "x", map[string]interface{}{}},
		"dict": map[string]interface{}{"k": "v", "n": []interface{}{}},
	}
	var buf bytes.Buffer
	if err := goxpc.EncodeMessage(&buf, goxpc.Message{Flags: goxpc.AlwaysSetFlag | goxpc.DataFlag | goxpc.HeartbeatRequestFlag, Body: body, Id: 1}); err != nil {
		t.Fatal(err)
	}
	m, err := xpc.Decode(buf.Bytes())
	if err != nil {
		t.Fatalf("decode go-ios bytes: %v\n%x", err, buf.Bytes())
	}
	if m.Flags != xpc.FlagsRequest || m.ID != 1 {
		t.Errorf("header: %v id %d", m.Flags, m.ID)
	}
	if err := sameAsGoIOS(m.Body, body); err != "" {
		t.Error(err)
	}
	// Empty body (go-ios's PING).
	buf.Reset()
	goxpc.EncodeMessage(&buf, goxpc.Message{Flags: 0x201})
	if m, err := xpc.Decode(buf.Bytes()); err != nil || m.Flags != xpc.FlagsPingMsg || m.Body != nil {
		t.Errorf("ping: %v %v", m, err)
	}
}

// sameAsGoIOS compares our value with go-ios's decoded form, type for type.
func sameAsGoIOS(ours xpc.Value, theirs interface{}) string {
	switch v := ours.(type) {
	case *xpc.Dict:
		m, ok := theirs.(map[string]interface{})
		if !ok || len(m) != v.Len() {
			return "dictionary mismatch"
		}
		for k, e := range v.All() {
			if s := sameAsGoIOS(e, m[k]); s != "" {
				return "[" + k + "]" + s
			}
		}
		return ""
	case xpc.Array:
		a, ok := theirs.([]interface{})
		if !ok || len(a) != len(v) {
			return "array mismatch"
		}
		for i, e := range v {
			if s := sameAsGoIOS(e, a[i]); s != "" {
				return s
			}
		}
		return ""
	case xpc.FileTransfer:
		ft, ok := theirs.(goxpc.FileTransfer)
		size, _ := v.Size()
		if !ok || ft.MsgId != v.ID || ft.TransferSize != size {
			return "file transfer mismatch"
		}
		return ""
	}
	var want interface{}
	switch v := ours.(type) {
	case xpc.Null:
		want = nil
	case xpc.Bool:
		want = bool(v)
	case xpc.Int64:
		want = int64(v)
	case xpc.Uint64:
		want = uint64(v)
	case xpc.Double:
		want = float64(v)
	case xpc.String:
		want = string(v)
	case xpc.UUID:
		want = uuid.UUID(v)
	case xpc.Date:
		if tt, ok := theirs.(time.Time); !ok || !tt.Equal(v.Time()) {
			return "date mismatch"
		}
		return ""
	case xpc.Data:
		if b, ok := theirs.([]byte); !ok || !bytes.Equal(b, v) {
			return "data mismatch"
		}
		return ""
	default:
		return "unexpected type " + strings.TrimPrefix(ours.Kind().String(), "")
	}
	if want != theirs {
		return "value mismatch"
	}
	return ""
}
