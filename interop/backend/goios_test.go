package backend_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"reflect"
	"time"

	"testing"

	goios "github.com/danielpaulus/go-ios/ios"
	gohttp "github.com/danielpaulus/go-ios/ios/http"
	goxpc "github.com/danielpaulus/go-ios/ios/xpc"

	"github.com/iosmux/iosmux/sim"
	"github.com/iosmux/iosmux/xpc"
)

// goiosProperties decodes the device's own Properties with go-ios's
// decoder, for comparison with what go-ios read from the backend.
func goiosProperties(t testing.TB, d *xpc.Dict) map[string]interface{} {
	t.Helper()
	m := xpc.Message{Flags: xpc.FlagsMsg, Body: xpc.NewDict("Properties", d)}
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := goxpc.DecodeMessage(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return gm.Body["Properties"].(map[string]interface{})
}

// checkGoIOS: go-ios's RSD client against the backend, then services
// through forwarders with go-ios's own connection helpers.
func checkGoIOS(t testing.TB, r *rig, bulk int) {
	t.Helper()
	port := int(r.b.Addr().Port())
	type result struct {
		h     goios.RsdHandshakeResponse
		props map[string]interface{}
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		defer func() { done <- res }()
		s, err := goios.NewWithAddrPort("::1", port)
		if err != nil {
			res.err = err
			return
		}
		defer s.Close()
		res.h, res.err = s.Handshake()
		if res.err != nil {
			return
		}
		// go-ios's RsdService keeps only the UDID; its lower layers give
		// the whole body.
		conn, err := goios.ConnectTUNDevice("::1", port, goios.DeviceEntry{})
		if err != nil {
			res.err = err
			return
		}
		h, err := gohttp.NewHttpConnection(conn)
		if err != nil {
			res.err = err
			return
		}
		defer h.Close()
		x, err := goios.CreateXpcConnection(h)
		if err != nil {
			res.err = err
			return
		}
		m, err := x.ReceiveOnClientServerStream()
		if err != nil {
			res.err = err
			return
		}
		res.props, _ = m["Properties"].(map[string]interface{})
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatal("go-ios RSD client hung")
	}
	if res.err != nil {
		t.Fatalf("go-ios RSD: %v", res.err)
	}
	if res.h.Udid != r.dev.UDID() {
		t.Errorf("go-ios read UDID %q, want %q", res.h.Udid, r.dev.UDID())
	}
	if want := goiosProperties(t, r.device.Properties); !reflect.DeepEqual(res.props, want) {
		t.Errorf("go-ios read Properties %v\nwant the device's %v", res.props, want)
	}
	ours := r.b.Handshake()
	if len(res.h.Services) != len(ours.Services) {
		t.Errorf("go-ios read %d services, backend lists %d", len(res.h.Services), len(ours.Services))
	}
	for _, s := range ours.Services {
		if got := res.h.GetPort(s.Name); got != int(s.Port) {
			t.Errorf("go-ios: %s at %d, backend has %d", s.Name, got, s.Port)
		}
	}

	// Lockdown shim: go-ios's RSDCheckin, then its plist codec.
	conn, err := goios.ConnectTUNDevice("::1", res.h.GetPort(sim.LockdownTrusted), goios.DeviceEntry{})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(time.Minute))
	if err := goios.RsdCheckin(conn); err != nil {
		t.Fatalf("go-ios RSDCheckin through the forwarder: %v", err)
	}
	codec := goios.NewPlistCodecReadWriter(conn, conn)
	if err := codec.Write(map[string]interface{}{"Label": "go-ios", "Request": "GetValue", "Key": "UniqueDeviceID"}); err != nil {
		t.Fatal(err)
	}
	var reply map[string]interface{}
	if err := codec.Read(&reply); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if reply["Value"] != r.dev.UDID() {
		t.Errorf("go-ios GetValue UniqueDeviceID = %v", reply["Value"])
	}

	// Byte source: ask for bulk bytes, compare with the simulator's stream.
	src, err := goios.ConnectTUNDevice("::1", res.h.GetPort(sim.SourceService), goios.DeviceEntry{})
	if err != nil {
		t.Fatal(err)
	}
	src.SetDeadline(time.Now().Add(2 * time.Minute))
	var req [8]byte
	binary.BigEndian.PutUint64(req[:], uint64(bulk))
	src.Write(req[:])
	got, err := io.ReadAll(src)
	src.Close()
	want := make([]byte, bulk)
	io.ReadFull(sim.SourceStream(), want)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("byte source through the forwarder: %d bytes, err %v", len(got), err)
	}

	// Byte sink: send, half-close, read the device's count and digest.
	sink, err := goios.ConnectTUNDevice("::1", res.h.GetPort(sim.SinkService), goios.DeviceEntry{})
	if err != nil {
		t.Fatal(err)
	}
	sink.SetDeadline(time.Now().Add(2 * time.Minute))
	data := bytes.Repeat([]byte("go-ios to the sink "), bulk/19)
	go func() {
		sink.Write(data)
		sink.CloseWrite()
	}()
	ack, err := io.ReadAll(sink)
	sink.Close()
	sum := sha256.Sum256(data)
	if err != nil || len(ack) != 40 || binary.BigEndian.Uint64(ack) != uint64(len(data)) || !bytes.Equal(ack[8:], sum[:]) {
		t.Errorf("byte sink through the forwarder: reply %x, err %v", ack, err)
	}
}
