package pairing

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/iosmux/iosmux/xpc"
)

// TestXPCEnvelopeVectors: our XPC form of an envelope is byte for byte
// pymobiledevice3's (testdata/xpc_envelope.json), and theirs decodes to the
// same message.
func TestXPCEnvelopeVectors(t *testing.T) {
	var f struct {
		Vectors []struct {
			Name    string `json:"name"`
			Flags   string `json:"flags"`
			ID      uint64 `json:"message_id"`
			Wrapper string `json:"xpc_wrapper"`
		} `json:"vectors"`
	}
	readJSONFile(t, "xpc_envelope.json", &f)
	if len(f.Vectors) != 2 {
		t.Fatalf("%d vectors", len(f.Vectors))
	}
	for _, v := range f.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			want := unhex(t, v.Wrapper)
			flags, _ := strconv.ParseUint(v.Flags, 0, 32)
			if xpc.Flags(flags) != envelopeFlags {
				t.Errorf("vector flags %s, ours %v", v.Flags, envelopeFlags)
			}
			m, err := xpc.Decode(want)
			if err != nil {
				t.Fatal(err)
			}
			if m.Body.String("mangledTypeName") != mangledTypeName {
				t.Errorf("mangledTypeName %q", m.Body.String("mangledTypeName"))
			}
			tr, err := fromXPC(m.Body.Dict("value"), 0)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := parseMessage(tr.(tree))
			if err != nil {
				t.Fatal(err)
			}
			if v.Name == "handshake-request" {
				// Built from scratch, the request encodes identically.
				msg = handshakeRequest(0)
				msg.from = originHost
			}
			val, err := toXPC(msg.tree())
			if err != nil {
				t.Fatal(err)
			}
			out := envelopeMessage(val.(*xpc.Dict))
			out.ID = v.ID
			got, err := out.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			eqHex(t, "wrapper", got, v.Wrapper)
		})
	}
}

// xpcDevice serves the device role over RemoteXPC on a loopback listener.
type xpcDevice struct {
	ln  net.Listener
	dev *Server
	wg  sync.WaitGroup
}

func startXPCDevice(t *testing.T, dev *Server) *xpcDevice {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	xd := &xpcDevice{ln: ln, dev: dev}
	ctx, cancel := context.WithCancel(context.Background())
	xd.wg.Add(1)
	go func() {
		defer xd.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			xd.wg.Add(1)
			go func() {
				defer xd.wg.Done()
				if err := dev.ServeXPC(ctx, nc, nil); err != nil && !errors.Is(err, context.Canceled) {
					t.Logf("device: %v", err)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		xd.wg.Wait()
	})
	return xd
}

func (xd *xpcDevice) dial(ctx context.Context) (Transport, error) {
	nc, err := net.Dial("tcp", xd.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	c, err := xpc.Client(ctx, nc, nil)
	if err != nil {
		return nil, err
	}
	return NewXPC(c), nil
}

func TestPairOverXPC(t *testing.T) {
	ctx := testCtx(t)
	hosts := &MemoryHosts{}
	dev, err := NewServer(&ServerConfig{Identity: vecDevice, Handshake: vecHandshake, Hosts: hosts,
		CreateListener: func(context.Context, string, ListenerRequest) (*Listener, error) {
			return &Listener{Port: vecPort}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	xd := startXPCDevice(t, dev)
	store := RecordStore{Dir: t.TempDir()}
	cfg := &PairConfig{Host: hostConfig(), Dial: xd.dial, Store: store}
	res, err := Pair(ctx, cfg)
	if err != nil || res.AlreadyPaired || res.ID != vecDeviceUDID {
		t.Fatalf("Pair over XPC: %+v, %v", res, err)
	}
	res, err = Pair(ctx, cfg)
	if err != nil || !res.AlreadyPaired {
		t.Fatalf("second Pair over XPC: %+v, %v", res, err)
	}
	rec, _ := store.Load(vecDeviceUDID)
	tr, err := xd.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h := NewClient(tr, &cfg.Host)
	defer h.Close()
	if _, err := h.Handshake(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Verify(ctx, rec.Identity(vecHostID)); err != nil {
		t.Fatal(err)
	}
	if l, err := h.CreateListener(ctx, ListenerRequest{Transport: TransportTCP, Key: h.SharedSecret()}); err != nil || l.Port != vecPort {
		t.Fatalf("CreateListener: %+v, %v", l, err)
	}
}

// TestXPCSkipsServiceVersion: a {"ServiceVersion": 2} message before the
// first envelope (one possible placement, tunnel.md §5.2) is skipped.
func TestXPCSkipsServiceVersion(t *testing.T) {
	ctx := testCtx(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		c, err := xpc.Server(ctx, nc, nil)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		sv := xpc.Message{Flags: envelopeFlags, Body: xpc.NewDict("ServiceVersion", xpc.Uint64(2))}
		if err := c.Send(ctx, xpc.RootChannel, &sv); err != nil {
			done <- err
			return
		}
		t := NewXPC(c)
		resp := &message{kind: kindResponse, name: reqHandshake, value: vecHandshake.value(), from: originDevice}
		werr := t.WriteEnvelope(ctx, resp.tree())
		<-c.Done() // until the host closes
		done <- werr
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := xpc.Client(ctx, nc, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewXPC(c)
	env, err := tr.ReadEnvelope(ctx)
	tr.Close()
	if err != nil {
		t.Fatal(err)
	}
	m, err := parseMessage(env)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := parseHandshakeResponse(m); err != nil || info.Device.Identifier != vecDeviceUDID {
		t.Errorf("handshake: %+v, %v", info, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
