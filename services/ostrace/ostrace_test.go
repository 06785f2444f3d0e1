package ostrace

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/safeplist"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
)

func uuid(s string) (u [16]byte) {
	b, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	copy(u[:], b)
	return u
}

// log01 as pymobiledevice3, go-ios and appium decoded it.
var log01 = Record{
	PID: 4321, UniquePID: 4321, ProcessUUID: uuid("a1b2c3d4-e5f6-4718-9a0b-1c2d3e4f5061"),
	Time:  time.Unix(1767323045, 123456000).UTC(),
	Level: LevelInfo, MachTime: 73588229205, ThreadID: 2043453,
	ImageUUID: uuid("b1b2c3d4-e5f6-4718-9a0b-1c2d3e4f5062"), ImageOffset: 4660,
	Filename:  "/private/var/containers/Bundle/Application/X/Demo.app/Demo",
	ImageName: "/usr/lib/system/libsystem_trace.dylib",
	Message:   "hello from the simulator", Subsystem: "com.example.demo", Category: "general",
}

// TestVectorLog01: the record frame decodes to what the three references
// read, and the encoder writes the same 281 bytes.
func TestVectorLog01(t *testing.T) {
	wire := testkit.ReadHex(t, "log01_os_trace_record.hex")
	m, p, err := readFrame(bufio.NewReader(bytes.NewReader(wire)), nil)
	if err != nil || m != markerRecord {
		t.Fatalf("readFrame = %#x, %v", m, err)
	}
	r, err := ParseRecord(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r, log01) {
		t.Errorf("ParseRecord =\n %+v\nwant\n %+v", r, log01)
	}
	if r.Process() != "Demo" || r.Time.Format(time.RFC3339Nano) != "2026-01-02T03:04:05.123456Z" {
		t.Errorf("Process %q, Time %s", r.Process(), r.Time.Format(time.RFC3339Nano))
	}
	if got := AppendRecordFrame(nil, &log01); !bytes.Equal(got, wire) {
		t.Errorf("AppendRecordFrame:\n got %x\nwant %x", got, wire)
	}
}

// TestVectorLog02: the host reads log02 as success; the device role's
// own reply is a binary plist of the same content, under 256 bytes.
func TestVectorLog02(t *testing.T) {
	wire := testkit.ReadHex(t, "log02_os_trace_start_activity_reply.hex")
	m, p, err := readFrame(bufio.NewReader(bytes.NewReader(wire)), nil)
	if err != nil || m != markerReply {
		t.Fatalf("readFrame = %#x, %v", m, err)
	}
	rep, err := parseReply(p)
	if err != nil || rep["Status"] != "RequestSuccessful" || len(rep) != 1 {
		t.Fatalf("reply %v, %v", rep, err)
	}
	ours, err := appendReply(nil, map[string]any{"Status": "RequestSuccessful"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ours) >= replyLimit || ours[0] != 1 || !bytes.Equal(ours[1:4], []byte{0, 0, 0}) {
		t.Errorf("our reply %x: want 01, a length under 256", ours)
	}
	m2, p2, _ := readFrame(bufio.NewReader(bytes.NewReader(ours)), nil)
	if rep2, err := parseReply(p2); m2 != markerReply || err != nil || !reflect.DeepEqual(rep2, rep) {
		t.Errorf("our reply decodes to %v, %v", rep2, err)
	}
}

// TestVectorLp11: the device role reads pymobiledevice3's StartActivity;
// our client's request holds the same dictionary.
func TestVectorLp11(t *testing.T) {
	wire := testkit.ReadHex(t, "lp11_os_trace_start_activity_request.hex")
	want := map[string]any{"MessageFilter": uint64(65535), "Pid": int64(-1), "Request": "StartActivity", "StreamFlags": uint64(60)}
	payload, rest, err := lockdown.ParseFrame(wire, 0)
	if err != nil || len(rest) != 0 {
		t.Fatal(err)
	}
	var got map[string]any
	if err := safeplist.Unmarshal(payload, &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("lp11 = %v, %v", got, err)
	}

	// Device role: it answers lp11 and streams.
	dev := &fakeDevice{}
	a, b := testkit.Pipe()
	defer a.Close()
	srv := &Server{Device: dev}
	go func() { defer b.Close(); srv.Serve(context.Background(), b) }()
	a.Write(wire)
	br := bufio.NewReader(a)
	if m, p, err := readFrame(br, nil); err != nil || m != markerReply {
		t.Fatalf("reply: %#x %v", m, err)
	} else if rep, _ := parseReply(p); rep["Status"] != "RequestSuccessful" {
		t.Fatalf("reply %v", rep)
	}
	if req := dev.waitActivity(t); req != DefaultActivity {
		t.Errorf("device saw %+v, want %+v", req, DefaultActivity)
	}

	// Host role: the request it writes decodes to lp11's dictionary.
	x, y := testkit.Pipe()
	defer x.Close()
	go NewClient(x).StartActivity(context.Background(), DefaultActivity)
	pc := lockdown.NewPlistConn(y, 0)
	var sent map[string]any
	if err := pc.Receive(context.Background(), &sent); err != nil || !reflect.DeepEqual(sent, want) {
		t.Errorf("client sent %v, %v; want %v", sent, err, want)
	}
	y.Close()
}

type fakeDevice struct {
	mu      sync.Mutex
	procs   []Process
	reqs    chan ActivityRequest
	records [][]Record
	archive []byte
}

func (d *fakeDevice) Processes() []Process { return d.procs }

func (d *fakeDevice) Activity(ctx context.Context, req ActivityRequest) (Feed, error) {
	d.mu.Lock()
	if d.reqs == nil {
		d.reqs = make(chan ActivityRequest, 4)
	}
	d.reqs <- req
	d.mu.Unlock()
	return &feed{batches: d.records}, nil
}

func (d *fakeDevice) waitActivity(t *testing.T) ActivityRequest {
	t.Helper()
	for range 200 {
		d.mu.Lock()
		ch := d.reqs
		d.mu.Unlock()
		if ch != nil {
			return <-ch
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no StartActivity reached the device")
	return ActivityRequest{}
}

func (d *fakeDevice) Archive(ctx context.Context, w io.Writer, req ArchiveRequest) error {
	_, err := w.Write(d.archive)
	return err
}

type feed struct{ batches [][]Record }

func (f *feed) Next(ctx context.Context) ([]Record, error) {
	if len(f.batches) > 0 {
		b := f.batches[0]
		f.batches = f.batches[1:]
		return b, nil
	}
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

// serve starts the device role on a pipe and returns the host's client.
func serve(t *testing.T, dev Device) *Client {
	t.Helper()
	a, b := testkit.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); defer b.Close(); (&Server{Device: dev}).Serve(context.Background(), b) }()
	t.Cleanup(func() {
		a.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("the device role did not end after the host closed")
		}
	})
	return NewClient(a)
}

func TestPidList(t *testing.T) {
	testkit.CheckLeaks(t)
	dev := &fakeDevice{procs: []Process{{58, "SpringBoard"}, {1, "launchd"}, {4321, "Demo"}}}
	c := serve(t, dev)
	ctx := context.Background()
	for range 2 { // repeatable on one connection
		got, err := c.PidList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []Process{{1, "launchd"}, {58, "SpringBoard"}, {4321, "Demo"}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("PidList = %v, want %v", got, want)
		}
	}
}

// TestActivity: records reach the host decoded; the device applies the
// pid and the level flags.
func TestActivity(t *testing.T) {
	testkit.CheckLeaks(t)
	var all []Record
	for i := range 300 {
		r := log01
		r.PID = uint32(100 + i%3)
		r.Level = []Level{LevelDefault, LevelInfo, LevelDebug, LevelError, LevelFault}[i%5]
		r.Message = fmt.Sprintf("message %d", i)
		if i%7 == 0 {
			r.Subsystem, r.Category = "", ""
		}
		all = append(all, r)
	}
	for _, tt := range []ActivityRequest{
		DefaultActivity,
		{PID: 101, MessageFilter: FilterAll, StreamFlags: DefaultStreamFlag},
		{PID: AllProcesses, MessageFilter: FilterLogMessage, StreamFlags: 0},
		{PID: AllProcesses, MessageFilter: FilterActivityCreate, StreamFlags: FlagDebug},
	} {
		t.Run(fmt.Sprintf("%+v", tt), func(t *testing.T) {
			dev := &fakeDevice{records: [][]Record{all[:100], all[100:250], all[250:]}}
			c := serve(t, dev)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.StartActivity(ctx, tt); err != nil {
				t.Fatal(err)
			}
			var want []Record
			for i := range all {
				if tt.Allows(&all[i]) {
					want = append(want, all[i])
				}
			}
			if tt.MessageFilter == FilterActivityCreate && len(want) != 0 {
				t.Fatal("a filter without log messages let records through")
			}
			for i, w := range want {
				r, err := c.Next(ctx)
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if !reflect.DeepEqual(*r, w) {
					t.Fatalf("record %d = %+v, want %+v", i, *r, w)
				}
			}
			short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel2()
			if r, err := c.Next(short); err == nil {
				t.Errorf("an extra record passed the filter: %+v", r)
			}
		})
	}
}

// TestCreateArchive: the archive arrives whole, in chunks, with progress;
// a refused request is a RequestError.
func TestCreateArchive(t *testing.T) {
	testkit.CheckLeaks(t)
	data := bytes.Repeat([]byte("tar bytes "), 300_000) // 3 MB: several chunks
	c := serve(t, &fakeDevice{archive: data})
	var out bytes.Buffer
	var calls []int64
	n, err := c.CreateArchive(context.Background(), &out, ArchiveRequest{AgeLimit: 2}, func(n int64) { calls = append(calls, n) })
	if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("CreateArchive = %d, %v; %d bytes match %v", n, err, out.Len(), bytes.Equal(out.Bytes(), data))
	}
	if len(calls) < 3 || calls[len(calls)-1] != n {
		t.Errorf("progress calls %v", calls)
	}

	c = serve(t, &fakeDevice{})
	var re *RequestError
	if _, err := c.request(context.Background(), "Bogus", map[string]any{}); !errors.As(err, &re) || !strings.Contains(err.Error(), "UnknownRequest") {
		t.Errorf("unknown request: %v", err)
	}
}

// TestBadFrames: the host names what is wrong with what a device sent.
func TestBadFrames(t *testing.T) {
	tests := []struct {
		name, want string
		wire       []byte
	}{
		{"marker", "unknown marker", []byte{9, 0, 0, 0, 0}},
		{"huge record", "more than", []byte{2, 0xff, 0xff, 0xff, 0x7f}},
		{"huge reply", "more than", []byte{1, 0x7f, 0xff, 0xff, 0xff}},
		{"short record", "header alone", append([]byte{2, 4, 0, 0, 0}, 1, 2, 3, 4)},
		{"cut", "unexpected EOF", []byte{2, 200, 0, 0, 0, 1}},
		{"reply in stream", "marker 0x01 in the activity", []byte{1, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := net.Pipe()
			go func() { b.Write(tt.wire); b.Close() }()
			c := NewClient(a)
			_, err := c.Next(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Next = %v, want %q", err, tt.want)
			}
		})
	}
	// A string running past the record, or without its NUL.
	r := AppendRecord(nil, &log01)
	bad := bytes.Clone(r)
	bad[offMessageLen] = 0xff
	if _, err := ParseRecord(bad); !errors.Is(err, ErrRecord) {
		t.Errorf("message past the end: %v", err)
	}
	bad = bytes.Clone(r)
	bad[len(bad)-1] = 'x'
	if _, err := ParseRecord(bad); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("no NUL: %v", err)
	}
}
