package backend

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/rsd"
	"github.com/iosmux/iosmux/xpc"
)

// cdsFrames returns CoreDeviceService's captured set-up (overview.md §5.2,
// 204 bytes) frame by frame: testdata/h2_client_init_1MiB (pymobiledevice3's
// bytes, identical to the capture frame for frame) with the SETTINGS ACK
// moved to where CoreDeviceService put it, after HEADERS(1).
func cdsFrames(t *testing.T) (names []string, frames [][]byte) {
	t.Helper()
	raw, err := os.ReadFile("testdata/h2_client_init_1MiB.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Frames []struct{ What, Hex string }
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var ack []byte
	for _, f := range v.Frames {
		b, err := hex.DecodeString(f.Hex)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(f.What, "ACK") {
			ack = b
			continue
		}
		names = append(names, f.What)
		frames = append(frames, b)
		if strings.HasPrefix(f.What, "HeadersFrame(stream=1") {
			names = append(names, "SETTINGS ACK")
			frames = append(frames, nil) // filled below
		}
	}
	total := 0
	for i, f := range frames {
		if f == nil {
			frames[i] = ack
		}
		total += len(frames[i])
	}
	whole, _ := os.ReadFile("testdata/h2_client_init_1MiB.hex")
	if want := len(bytes.TrimSpace(whole)) / 2; total != want || total != 204 {
		t.Fatalf("capture is %d bytes, want 204 (%d in the vector)", total, want)
	}
	return names, frames
}

// frameLog collects what the server sends, one description per frame.
type frameLog struct {
	mu     sync.Mutex
	frames []string
	err    error
}

func (l *frameLog) read(r io.Reader) {
	br := bufio.NewReader(r)
	streams := map[uint32][]byte{}
	for {
		var h [9]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			return
		}
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		typ, flags, stream := h[3], h[4], binary.BigEndian.Uint32(h[5:])&0x7fffffff
		var desc []string
		switch typ {
		case 0: // DATA: one line per complete XPC message
			if flags&0x1 != 0 {
				desc = append(desc, fmt.Sprintf("DATA %d END_STREAM", stream))
			}
			buf := append(streams[stream], p...)
			for len(buf) >= xpc.HeaderLen {
				end := xpc.HeaderLen + int(binary.LittleEndian.Uint64(buf[8:]))
				if len(buf) < end {
					break
				}
				m, err := xpc.Decode(buf[:end])
				buf = buf[end:]
				switch {
				case err != nil:
					desc = append(desc, fmt.Sprintf("DATA %d undecodable: %v", stream, err))
				case m.Body == nil:
					desc = append(desc, fmt.Sprintf("DATA %d %08x id %d", stream, uint32(m.Flags), m.ID))
				case m.Body.Has("MessageType"):
					desc = append(desc, fmt.Sprintf("DATA %d %08x id %d %s", stream, uint32(m.Flags), m.ID, m.Body.String("MessageType")))
				default:
					desc = append(desc, fmt.Sprintf("DATA %d %08x id %d dict(%d)", stream, uint32(m.Flags), m.ID, m.Body.Len()))
				}
			}
			streams[stream] = buf
		case 1:
			desc = append(desc, fmt.Sprintf("HEADERS %d flags %02x len %d", stream, flags, n))
		case 3:
			desc = append(desc, fmt.Sprintf("RST_STREAM %d", stream))
		case 4:
			if flags&1 != 0 {
				desc = append(desc, "SETTINGS ACK")
			} else {
				desc = append(desc, "SETTINGS")
			}
		case 7:
			desc = append(desc, "GOAWAY")
		case 8:
			desc = append(desc, fmt.Sprintf("WINDOW_UPDATE %d", stream))
		default:
			desc = append(desc, fmt.Sprintf("%s %d", frameName(typ), stream))
		}
		l.mu.Lock()
		l.frames = append(l.frames, desc...)
		l.mu.Unlock()
	}
}

func (l *frameLog) take(from int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.frames[from:]...)
}

// TestFrameOrderCoreDeviceService replays CoreDeviceService's captured
// set-up frame by frame against the backend's RSD connection handler and,
// after each frame, lets every goroutine settle (synctest) and checks
// exactly what the backend has sent: nothing before the client opened the
// stream it concerns, each set-up frame answered one for one, and the
// Handshake only after INIT_HANDSHAKE on stream 3 (overview.md §5.3), never
// followed by RST_STREAM, END_STREAM or GOAWAY.
func TestFrameOrderCoreDeviceService(t *testing.T) {
	names, frames := cdsFrames(t)
	// What the backend must have sent after each client frame (the
	// accept itself first).
	want := [][]string{
		{"SETTINGS", "WINDOW_UPDATE 0"},  // accept
		{},                               // preface
		{"SETTINGS ACK"},                 // SETTINGS
		{},                               // WINDOW_UPDATE
		{"HEADERS 1 flags 04 len 0"},     // HEADERS(1)
		{},                               // SETTINGS ACK
		{"DATA 1 00000001 id 0 dict(0)"}, // DATA(1) {}
		{"HEADERS 3 flags 04 len 0"},     // HEADERS(3)
		{"DATA 1 00000201 id 0"},         // DATA(1) PING
		{"DATA 3 00400001 id 0", "DATA 1 00000101 id 2 Handshake"}, // DATA(3) INIT_HANDSHAKE
	}
	if len(want) != len(frames)+1 {
		t.Fatalf("%d client frames, %d expectations", len(frames), len(want))
	}
	var wire bytes.Buffer
	synctest.Test(t, func(t *testing.T) {
		client, server := testkit.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
		if err != nil {
			t.Fatal(err)
		}
		b := &Backend{cfg: Config{WireLog: newWireLogWriter(&wire)}, log: slog.New(slog.DiscardHandler)}
		bt := &boot{ctx: ctx}
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.serveHandshake(bt, srv, server, "rsd")
		}()
		var got frameLog
		go got.read(client)

		seen := 0
		check := func(step int, what string) {
			synctest.Wait()
			now := got.take(seen)
			seen += len(now)
			if strings.Join(now, "; ") != strings.Join(want[step], "; ") {
				t.Errorf("after %s the backend sent %q, want %q", what, now, want[step])
			}
		}
		check(0, "accept")
		for i, f := range frames {
			if _, err := client.Write(f); err != nil {
				t.Fatal(err)
			}
			check(i+1, names[i])
		}
		client.Close()
		cancel()
		<-done
	})
	checkWireLog(t, wire.Bytes())
}

// TestFrameOrderAllAtOnce: the same 204 bytes in one write (the client
// sends its whole opening at once) give the same frames in the same order.
func TestFrameOrderAllAtOnce(t *testing.T) {
	_, frames := cdsFrames(t)
	synctest.Test(t, func(t *testing.T) {
		client, server := testkit.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		srv, err := rsd.NewServer(rsd.ServerConfig{Properties: rsd.ExampleProperties(), Services: rsd.ExampleServices()})
		if err != nil {
			t.Fatal(err)
		}
		b := &Backend{log: slog.New(slog.DiscardHandler)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.serveHandshake(&boot{ctx: ctx}, srv, server, "rsd")
		}()
		var got frameLog
		go got.read(client)
		client.Write(bytes.Join(frames, nil))
		synctest.Wait()
		all := got.take(0)
		want := []string{"SETTINGS", "WINDOW_UPDATE 0", "SETTINGS ACK", "HEADERS 1 flags 04 len 0",
			"DATA 1 00000001 id 0 dict(0)", "HEADERS 3 flags 04 len 0", "DATA 1 00000201 id 0",
			"DATA 3 00400001 id 0", "DATA 1 00000101 id 2 Handshake"}
		if strings.Join(all, "; ") != strings.Join(want, "; ") {
			t.Errorf("backend sent %q, want %q", all, want)
		}
		client.Close()
		cancel()
		<-done
	})
}

// checkWireLog: the wire log of the replay is JSON lines that show the
// client's INIT_HANDSHAKE before the backend's Handshake, with the
// Handshake's body decoded.
func checkWireLog(t *testing.T, log []byte) {
	t.Helper()
	var initAt, hsAt, frames int
	initAt, hsAt = -1, -1
	for i, line := range bytes.Split(bytes.TrimSpace(log), []byte("\n")) {
		var l struct {
			Conn    uint64
			Dir     string
			Stream  int
			Frame   *struct{ Type string }
			Message *struct {
				Flags string
				ID    uint64
				Body  map[string]any
			}
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("wire log line %d %q: %v", i, line, err)
		}
		if l.Frame != nil {
			frames++
		}
		if m := l.Message; m != nil {
			if l.Dir == "recv" && l.Stream == 3 && m.Flags == "0x00400001" {
				initAt = i
			}
			if l.Dir == "send" && l.Stream == 1 && m.Body["MessageType"] == "Handshake" {
				hsAt = i
				props, _ := m.Body["Properties"].(map[string]any)
				if props["UniqueDeviceID"] == nil || m.Body["MessagingProtocolVersion"] == nil {
					t.Errorf("wire log Handshake body %v", m.Body)
				}
			}
		}
	}
	if initAt < 0 || hsAt < 0 || hsAt < initAt {
		t.Errorf("wire log: INIT_HANDSHAKE at line %d, Handshake at line %d", initAt, hsAt)
	}
	if frames != 8+9 { // the client's 8 frames after the preface, the backend's 9
		t.Errorf("wire log has %d frames, want every frame both ways (17)", frames)
	}
}
