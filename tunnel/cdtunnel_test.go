package tunnel

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// The response sample of tunnel.md §2.3 (pmd3 misc/RemoteXPC.md), with the
// spaces pmd3 emits, and the request as pmd3 writes it.
const (
	pmd3Request  = `{"type": "clientHandshakeRequest", "mtu": 16000}`
	pmd3Response = `{"clientParameters": {"address": "fd58:8c92:8961::2", "mtu": 1280, "netmask": "ffff:ffff:ffff:ffff::"}, "serverAddress": "fd58:8c92:8961::1", "serverRSDPort": 56307, "type": "serverHandshakeResponse"}`
)

func frame(body string) []byte { return appendFrame(nil, []byte(body)) }

func samplePmd3Params() Params {
	return Params{
		ClientAddress: netip.MustParseAddr("fd58:8c92:8961::2"),
		PrefixLen:     64,
		MTU:           1280,
		ServerAddress: netip.MustParseAddr("fd58:8c92:8961::1"),
		ServerRSDPort: 56307,
	}
}

func TestRequestBytes(t *testing.T) {
	// Sorted keys without spaces, as go-ios and idevice emit.
	got := AppendRequest(nil, Request{MTU: 16000})
	want, _ := hex.DecodeString("434454756e6e656c" + "002d")
	want = append(want, `{"mtu":16000,"type":"clientHandshakeRequest"}`...)
	if !bytes.Equal(got, want) {
		t.Fatalf("request = %x\nwant      %x", got, want)
	}
	req, err := ParseRequest(got)
	if err != nil || req.MTU != 16000 {
		t.Fatalf("ParseRequest = %+v, %v; want MTU 16000", req, err)
	}
}

func TestParseRequestVariants(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantMTU int
		wantErr bool
	}{
		{"pmd3", pmd3Request, 16000, false},
		{"go-ios", `{"mtu":1280,"type":"clientHandshakeRequest"}`, 1280, false},
		{"no mtu", `{"type":"clientHandshakeRequest"}`, 0, false},
		{"extra keys", `{"type":"clientHandshakeRequest","mtu":1420,"x":[1,{"y":null}]}`, 1420, false},
		{"wrong type", `{"type":"serverHandshakeResponse","mtu":1}`, 0, true},
		{"float mtu", `{"type":"clientHandshakeRequest","mtu":1.5}`, 0, true},
		{"string mtu", `{"type":"clientHandshakeRequest","mtu":"16000"}`, 0, true},
		{"huge mtu", `{"type":"clientHandshakeRequest","mtu":99999999999}`, 0, true},
		{"not object", `[1,2]`, 0, true},
		{"trailing", `{"type":"clientHandshakeRequest"} {}`, 0, true},
		{"truncated json", `{"type":"clientHandshakeRequest"`, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := ParseRequest(frame(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && req.MTU != tt.wantMTU {
				t.Fatalf("MTU = %d, want %d", req.MTU, tt.wantMTU)
			}
			if err != nil && !errors.Is(err, ErrHandshake) {
				t.Fatalf("err = %v, want ErrHandshake", err)
			}
		})
	}
}

func TestParseResponseSample(t *testing.T) {
	p, err := ParseResponse(frame(pmd3Response))
	if err != nil {
		t.Fatal(err)
	}
	if p != samplePmd3Params() {
		t.Fatalf("got %+v\nwant %+v", p, samplePmd3Params())
	}
	if got := p.ClientPrefix().String(); got != "fd58:8c92:8961::2/64" {
		t.Fatalf("ClientPrefix = %s", got)
	}
	if got := p.Netmask(); got != "ffff:ffff:ffff:ffff::" {
		t.Fatalf("Netmask = %s", got)
	}
}

func TestResponseRoundTrip(t *testing.T) {
	p := samplePmd3Params()
	b, err := AppendResponse(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	want := `CDTunnel` + "\x00\xbc" + `{"clientParameters":{"address":"fd58:8c92:8961::2","mtu":1280,"netmask":"ffff:ffff:ffff:ffff::"},"serverAddress":"fd58:8c92:8961::1","serverRSDPort":56307,"type":"serverHandshakeResponse"}`
	if string(b) != want {
		t.Fatalf("response = %q\nwant       %q", b, want)
	}
	got, err := ParseResponse(b)
	if err != nil || got != p {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	// Every proper prefix must fail to parse.
	for i := range len(b) {
		if _, err := ParseResponse(b[:i]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", i)
		}
	}
}

func TestResponseStaysUnder256(t *testing.T) {
	// go-ios reads only the low byte of the length (tunnel.md §2.5): the
	// device must answer in under 256 bytes even with the longest texts.
	p := Params{
		ClientAddress: netip.MustParseAddr("fd12:3456:789a:bcde:f012:3456:789a:bcde"),
		PrefixLen:     127,
		MTU:           65535,
		ServerAddress: netip.MustParseAddr("fd12:3456:789a:bcde:f012:3456:789a:bcdf"),
		ServerRSDPort: 65535,
	}
	b, err := AppendResponse(nil, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)-frameHeaderLen >= 256 {
		t.Fatalf("longest response body is %d bytes, want < 256", len(b)-frameHeaderLen)
	}
}

func TestLongResponseUsesHighLengthByte(t *testing.T) {
	// A body of 256 bytes or more must be read with the full u16be (go-ios
	// would read only the low byte).
	pad := strings.Repeat(" ", 300)
	body := pmd3Response[:len(pmd3Response)-1] + `,"pad":"` + pad + `"}`
	f := frame(body)
	if f[8] == 0 {
		t.Fatal("test frame does not need the high length byte")
	}
	p, err := ParseResponse(f)
	if err != nil || p != samplePmd3Params() {
		t.Fatalf("ParseResponse = %+v, %v", p, err)
	}
	p, err = clientHandshake(struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(f), io.Discard}, StreamMTU)
	if err != nil || p != samplePmd3Params() {
		t.Fatalf("clientHandshake = %+v, %v", p, err)
	}
}

func TestParseResponseDefaultsAndErrors(t *testing.T) {
	base := func(client string) string {
		return `{"clientParameters":{` + client + `},"serverAddress":"fd00::1","serverRSDPort":58783,"type":"serverHandshakeResponse"}`
	}
	tests := []struct {
		name    string
		body    string
		mtu     int
		bits    int
		wantErr bool
	}{
		{"defaults", base(`"address":"fd00::2"`), 1500, 64, false},
		{"netmask /48", base(`"address":"fd00::2","netmask":"ffff:ffff:ffff::"`), 1500, 48, false},
		{"netmask holes", base(`"address":"fd00::2","netmask":"ffff:0:ffff::"`), 0, 0, true},
		{"v4 address", base(`"address":"10.0.0.2"`), 0, 0, true},
		{"zoned address", base(`"address":"fe80::2%eth0"`), 0, 0, true},
		{"mtu too small", base(`"address":"fd00::2","mtu":1000`), 0, 0, true},
		{"no client params", `{"serverAddress":"fd00::1","serverRSDPort":1,"type":"serverHandshakeResponse"}`, 0, 0, true},
		{"no rsd port", `{"clientParameters":{"address":"fd00::2"},"serverAddress":"fd00::1","type":"serverHandshakeResponse"}`, 0, 0, true},
		{"rsd port too big", `{"clientParameters":{"address":"fd00::2"},"serverAddress":"fd00::1","serverRSDPort":70000,"type":"serverHandshakeResponse"}`, 0, 0, true},
		{"wrong type", `{"clientParameters":{"address":"fd00::2"},"serverAddress":"fd00::1","serverRSDPort":1,"type":"x"}`, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseResponse(frame(tt.body))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (p.MTU != tt.mtu || p.PrefixLen != tt.bits) {
				t.Fatalf("MTU, prefix = %d, %d; want %d, %d", p.MTU, p.PrefixLen, tt.mtu, tt.bits)
			}
		})
	}
}

func TestParseFrameErrors(t *testing.T) {
	good := frame(pmd3Response)
	bad := append([]byte("CDTunnex"), good[8:]...)
	if _, err := ParseResponse(bad); !errors.Is(err, ErrHandshake) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := ParseResponse(append(good, 0)); !errors.Is(err, ErrHandshake) {
		t.Fatalf("trailing byte: %v", err)
	}
	big := appendFrame(nil, bytes.Repeat([]byte(" "), MaxHandshakeBody+1))
	if _, err := readFrame(bytes.NewReader(big)); !errors.Is(err, ErrHandshake) {
		t.Fatalf("oversize body: %v", err)
	}
}

func TestHandshakeBothRoles(t *testing.T) {
	testkit.CheckLeaks(t)
	a, b := testkit.Pipe()
	defer a.Close()
	defer b.Close()
	want := samplePmd3Params()
	want.MTU = 16000
	type result struct {
		req Request
		p   Params
		err error
	}
	done := make(chan result, 1)
	go func() {
		req, p, err := ServerHandshake(context.Background(), b, func(req Request) (Params, error) {
			return want, nil
		})
		// IPv6 data may follow the response at once.
		b.Write([]byte{0x60, 1, 2, 3})
		done <- result{req, p, err}
	}()
	got, err := ClientHandshake(context.Background(), a, StreamMTU)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.req.MTU != StreamMTU || r.p != want {
		t.Fatalf("server: %+v", r)
	}
	if got != want {
		t.Fatalf("client got %+v, want %+v", got, want)
	}
	// The client must not have consumed the data after the response.
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || buf[0] != 0x60 {
		t.Fatalf("data after handshake = %x, %v", buf, err)
	}
}

func TestHandshakeOverSplitReads(t *testing.T) {
	resp, _ := AppendResponse(nil, samplePmd3Params())
	p, err := clientHandshake(struct {
		io.Reader
		io.Writer
	}{testkitOneByte(resp), io.Discard}, StreamMTU)
	if err != nil || p != samplePmd3Params() {
		t.Fatalf("one-byte reads: %+v, %v", p, err)
	}
}

func TestHandshakeContextDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := testkit.Pipe()
		defer a.Close()
		defer b.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		// The device never answers.
		_, err := ClientHandshake(ctx, a, StreamMTU)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("returned after %v, want 3s", d)
		}
	})
}

func TestHandshakeContextCancelClosesPlainStream(t *testing.T) {
	// A stream without deadlines is closed when ctx ends.
	synctest.Test(t, func(t *testing.T) {
		a, b := testkit.Pipe()
		defer b.Close()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(time.Second)
			cancel()
		}()
		_, err := ClientHandshake(ctx, struct{ io.ReadWriteCloser }{a}, StreamMTU)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled", err)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(frame(pmd3Response))
	b, _ := AppendResponse(nil, samplePmd3Params())
	f.Add(b)
	f.Add(frame(`{"clientParameters":{"address":"fd00::2"},"serverAddress":"fd00::1","serverRSDPort":1,"type":"serverHandshakeResponse"}`))
	f.Add([]byte("CDTunnel\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseResponse(data)
		if err != nil {
			return
		}
		// Whatever parses re-encodes, and the encoding parses to the same.
		enc, err := AppendResponse(nil, p)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode: %v", p, err)
		}
		p2, err := ParseResponse(enc)
		if err != nil || p2 != p {
			t.Fatalf("re-parse = %+v, %v; want %+v", p2, err, p)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add(frame(pmd3Request))
	f.Add(AppendRequest(nil, Request{MTU: 1420}))
	f.Add(AppendRequest(nil, Request{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data)
		if err != nil {
			return
		}
		req2, err := ParseRequest(AppendRequest(nil, req))
		if err != nil || req2 != req {
			t.Fatalf("re-parse = %+v, %v; want %+v", req2, err, req)
		}
	})
}
