package syslog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// log03's two lines as the device meant them (the second with "é").
var log03 = []Entry{
	{Time: stamp(1, 2, 3, 4, 5), DeviceName: "iPhone", Process: "Demo", Image: "libsystem_trace.dylib", PID: 4321,
		Level: LevelNotice, Message: "hello from the simulator", Parsed: true},
	{Time: stamp(1, 2, 3, 4, 6), DeviceName: "iPhone", Process: "SpringBoard", PID: 58,
		Level: LevelError, Message: "café test", Parsed: true},
}

func stamp(mo time.Month, d, h, m, s int) time.Time { return time.Date(0, mo, d, h, m, s, 0, time.UTC) }

// TestVectorLog03: the client reads log03's stream (also one byte at a
// time) into the two entries, vis escape decoded; the device role writes
// exactly log03's bytes for them.
func TestVectorLog03(t *testing.T) {
	wire := testkit.ReadHex(t, "log03_syslog_relay_stream.hex")
	for _, name := range []string{"whole", "onebyte", "half"} {
		t.Run(name, func(t *testing.T) {
			a, b := testkit.Pipe()
			defer a.Close()
			go func() {
				var r = bytes.NewReader(wire)
				switch name {
				case "onebyte":
					for {
						var c [1]byte
						if _, err := r.Read(c[:]); err != nil {
							break
						}
						b.Write(c[:])
					}
				case "half":
					b.Write(wire[:len(wire)/2])
					b.Write(wire[len(wire)/2:])
				default:
					b.Write(wire)
				}
				b.Close()
			}()
			c := NewClient(a, 0)
			var got []Entry
			err := c.Run(context.Background(), func(e *Entry) error { got = append(got, *e); return nil })
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("Run = %v, want ErrClosed", err)
			}
			if len(got) != len(log03) {
				t.Fatalf("got %d entries, want %d", len(got), len(log03))
			}
			for i, w := range log03 {
				g := got[i]
				g.Raw = ""
				if g != w {
					t.Errorf("entry %d = %+v, want %+v", i, g, w)
				}
				if got[i].Raw != w.String() {
					t.Errorf("entry %d Raw = %q, want %q", i, got[i].Raw, w.String())
				}
			}
		})
	}
	var out []byte
	for i := range log03 {
		out = AppendLine(out, &log03[i])
	}
	if !bytes.Equal(out, wire) {
		t.Errorf("AppendLine:\n got %q\nwant %q", out, wire)
	}
}

func TestVis(t *testing.T) {
	tests := []struct {
		name, raw, vis string
	}{
		{"ascii", "hello world", "hello world"},
		{"utf8", "café 日本", `caf\M-C\M-) \M-f\M^W\M-%\M-f\M^\\M-,`},
		{"backslash", `a\b`, `a\134b`},
		{"control", "a\nb\x1bc\x7f", `a\^Jb\^[c\^?`},
		{"tab", "a\tb", "a\tb"},
		{"meta space and DEL", "\xa0\xff\x80", `\240\M^?\M^@`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(AppendVis(nil, []byte(tt.raw))); got != tt.vis {
				t.Errorf("AppendVis(%q) = %q, want %q", tt.raw, got, tt.vis)
			}
			if got := string(AppendUnvis(nil, []byte(tt.vis))); got != tt.raw {
				t.Errorf("AppendUnvis(%q) = %q, want %q", tt.vis, got, tt.raw)
			}
		})
	}
	// Escapes other encoders use, and ones left alone.
	for in, want := range map[string]string{
		`a\\b`:     `a\b`,
		`\303\251`: "é",
		`\n\s\0`:   "\n \x00",
		`\q`:       `\q`,
		`\M-`:      `\M-`,
		`\`:        `\`,
		`\400`:     `\400`,
		`\M^x`:     `\M^x`,
	} {
		if got := string(AppendUnvis(nil, []byte(in))); got != want {
			t.Errorf("AppendUnvis(%q) = %q, want %q", in, got, want)
		}
	}
	// Every byte survives the round trip.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	v := AppendVis(nil, all)
	for _, c := range v {
		if c < ' ' && c != '\t' || c >= 0x7f {
			t.Fatalf("AppendVis left byte %#x unescaped", c)
		}
	}
	if got := AppendUnvis(nil, v); !bytes.Equal(got, all) {
		t.Errorf("round trip of all bytes: got %q", got)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want Entry // Raw is line
		ok   bool
	}{
		{"Jan 12 23:59:01 My-iPhone kernel[0] <Notice>: AppleKeyStore: x", Entry{Time: stamp(1, 12, 23, 59, 1), DeviceName: "My-iPhone", Process: "kernel", Level: LevelNotice, Message: "AppleKeyStore: x", Parsed: true}, true},
		{"Jan 2 03:04:05 iPhone a b[7] <Fault>: ", Entry{Time: stamp(1, 2, 3, 4, 5), DeviceName: "iPhone", Process: "a b", PID: 7, Level: LevelFault, Parsed: true}, true},
		{"Dec 31 00:00:00 iPhone x(y)[1] <Error>: msg [2] <Info>: z", Entry{Time: stamp(12, 31, 0, 0, 0), DeviceName: "iPhone", Process: "x", Image: "y", PID: 1, Level: LevelError, Message: "msg [2] <Info>: z", Parsed: true}, true},
		{"Feb  3 01:02:03 iPhone proc[x] <N>: y[5] <Warning>: m", Entry{Time: stamp(2, 3, 1, 2, 3), DeviceName: "iPhone", Process: "proc[x] <N>: y", PID: 5, Level: LevelWarning, Message: "m", Parsed: true}, true},
		{"Feb  3 01:02:03 iPhone proc[12] <Custom>: m", Entry{Time: stamp(2, 3, 1, 2, 3), DeviceName: "iPhone", Process: "proc", PID: 12, Level: "Custom", Message: "m", Parsed: true}, true},
		{"garbage", Entry{}, false},
		{"Foo  2 03:04:05 iPhone a[1] <Notice>: m", Entry{}, false},
		{"Jan  2 03:04:05 iPhone a[-1] <Notice>: m", Entry{}, false},
		{"Jan  2 03:04:05 iPhone a[1] <No tice>: m", Entry{}, false},
		{"Jan  2 03:04:05 iPhone", Entry{}, false},
		{"Jan  2 03:04:05 iPhone [1] <Notice>: m", Entry{}, false},
	}
	for _, tt := range tests {
		got, err := ParseLine(tt.line)
		if (err == nil) != tt.ok {
			t.Errorf("ParseLine(%q) error = %v, want ok %v", tt.line, err, tt.ok)
			continue
		}
		tt.want.Raw = tt.line
		if got != tt.want {
			t.Errorf("ParseLine(%q) =\n %+v\nwant\n %+v", tt.line, got, tt.want)
		}
		if tt.ok && got.String() != strings.Replace(tt.line, "Jan 2 ", "Jan  2 ", 1) {
			t.Errorf("String() = %q, want %q", got.String(), tt.line)
		}
		if !tt.ok && (!errors.Is(err, ErrFormat) || got.Raw != tt.line) {
			t.Errorf("ParseLine(%q) error %v, Raw %q: want ErrFormat and the line kept", tt.line, err, got.Raw)
		}
	}
}

func TestLevels(t *testing.T) {
	if !(LevelDebug.Severity() < LevelInfo.Severity() && LevelInfo.Severity() < LevelNotice.Severity() &&
		LevelNotice.Severity() < LevelWarning.Severity() && LevelWarning.Severity() < LevelError.Severity() &&
		LevelError.Severity() < LevelFault.Severity() && LevelFault.Severity() < LevelEmergency.Severity()) {
		t.Error("severities out of order")
	}
	if Level("Custom").Severity() != LevelNotice.Severity() {
		t.Error("unknown level is not Notice")
	}
	for in, want := range map[string]Level{"error": LevelError, "DEFAULT": LevelNotice, "Fault": LevelFault} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseLevel("loud"); err == nil || !strings.Contains(err.Error(), "notice") {
		t.Errorf("ParseLevel(loud) = %v, want an error listing the levels", err)
	}
}

func TestWithYear(t *testing.T) {
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	if got := WithYear(stamp(12, 31, 23, 0, 0), now); got.Year() != 2025 {
		t.Errorf("Dec 31 seen on Jan 1: year %d, want 2025", got.Year())
	}
	if got := WithYear(stamp(1, 1, 11, 0, 0), now); got.Year() != 2026 {
		t.Errorf("an hour ahead: year %d, want 2026", got.Year())
	}
}

func TestFilter(t *testing.T) {
	lines := []string{
		"Jan  2 03:04:05 iPhone Demo(UIKit)[4321] <Notice>: hello",
		"Jan  2 03:04:05 iPhone SpringBoard[58] <Error>: oops",
		"Jan  2 03:04:05 iPhone Demo[4321] <Debug>: detail",
		"Jan  2 03:04:05 iPhone Other[9] <Fault>: hello fault",
		"not a syslog line hello",
	}
	tests := []struct {
		name string
		f    Filter
		want []int
	}{
		{"empty", Filter{}, []int{0, 1, 2, 3, 4}},
		{"process", Filter{Processes: []string{"Demo"}}, []int{0, 2}},
		{"image is not a process", Filter{Processes: []string{"UIKit"}}, nil},
		{"pid", Filter{PIDs: []int{58, 9}}, []int{1, 3}},
		{"level", Filter{MinLevel: LevelError}, []int{1, 3}},
		{"regex", Filter{Match: regexp.MustCompile(`hello`)}, []int{0, 3, 4}},
		{"all", Filter{Processes: []string{"Demo", "Other"}, MinLevel: LevelNotice, Match: regexp.MustCompile(`hel+o`)}, []int{0, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for i, l := range lines {
				e, _ := ParseLine(l)
				if tt.f.Allow(&e) {
					got = append(got, i)
				}
			}
			if !equalInts(got, tt.want) {
				t.Errorf("passed %v, want %v", got, tt.want)
			}
			if tt.f.Empty() != (tt.name == "empty") {
				t.Errorf("Empty() = %v", tt.f.Empty())
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPrinter(t *testing.T) {
	e, _ := ParseLine("Jan  2 03:04:05 iPhone Demo(UIKit)[4321] <Error>: bad \x1b[31m\nthing")
	bad, _ := ParseLine("odd \x1b]0;title\x07 line")
	now := func() time.Time { return time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) }
	var out bytes.Buffer
	p := NewPrinter(&out, Plain, now)
	p.Print(&e)
	p.Print(&bad)
	p.Flush()
	want := "Jan  2 03:04:05 iPhone Demo(UIKit)[4321] <Error>: bad \\^[[31m\\^Jthing\nodd \\^[]0;title\\^G line\n"
	if out.String() != want {
		t.Errorf("plain:\n got %q\nwant %q", out.String(), want)
	}

	out.Reset()
	p = NewPrinter(&out, JSON, now)
	p.Print(&e)
	p.Print(&bad)
	p.Flush()
	dec := json.NewDecoder(&out)
	var j1, j2 map[string]any
	if err := dec.Decode(&j1); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&j2); err != nil {
		t.Fatal(err)
	}
	w1 := map[string]any{"time": "2026-01-02T03:04:05", "device": "iPhone", "process": "Demo", "image": "UIKit",
		"pid": 4321.0, "level": "Error", "message": "bad \x1b[31m\nthing"}
	if !equalJSON(j1, w1) {
		t.Errorf("JSON line 1 = %v, want %v", j1, w1)
	}
	if !equalJSON(j2, map[string]any{"line": bad.Raw}) {
		t.Errorf("JSON line 2 = %v", j2)
	}

	out.Reset()
	p = NewPrinter(&out, Color, now)
	p.Print(&e)
	p.Flush()
	s := out.String()
	if !strings.Contains(s, ansiRed+"<Error>") || strings.Contains(s, "\x1b[31m\n") || strings.Count(s, "\n") != 1 {
		t.Errorf("colour output %q: want the level in red and the device's escape neutralised", s)
	}
}

func equalJSON(a, b map[string]any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// feed hands out batches, then blocks until ctx ends.
type feed struct {
	mu      sync.Mutex
	batches [][]Entry
}

func (f *feed) Next(ctx context.Context) ([]Entry, error) {
	f.mu.Lock()
	if len(f.batches) > 0 {
		b := f.batches[0]
		f.batches = f.batches[1:]
		f.mu.Unlock()
		return b, nil
	}
	f.mu.Unlock()
	<-ctx.Done()
	return nil, context.Cause(ctx)
}

// TestServeClient runs both roles in memory: every entry the device sends
// arrives parsed and equal, including ones that need escaping; when the
// host closes, Serve returns although the feed is quiet.
func TestServeClient(t *testing.T) {
	testkit.CheckLeaks(t)
	var sent []Entry
	var batches [][]Entry
	for i := range 50 {
		var b []Entry
		for j := range 40 {
			b = append(b, Entry{Time: stamp(3, 9, 10, i%60, j%60), DeviceName: "iPhone", Process: "Proc é", PID: i*100 + j,
				Level: levels[j%len(levels)], Message: "line \\ with\nescapes ☃ " + strings.Repeat("x", j), Parsed: true})
		}
		sent = append(sent, b...)
		batches = append(batches, b)
	}
	a, b := net.Pipe()
	served := make(chan error, 1)
	go func() { defer b.Close(); served <- Serve(context.Background(), b, &feed{batches: batches}) }()
	c := NewClient(a, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, w := range sent {
		e, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		e.Raw = ""
		if *e != w {
			t.Fatalf("line %d = %+v, want %+v", i, *e, w)
		}
	}
	c.Close()
	select {
	case err := <-served:
		if err == nil {
			t.Error("Serve returned nil after the host closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not notice the host closing")
	}
}

// TestRunCancel: cancelling ctx ends Run with the cause.
func TestRunCancel(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := NewClient(a, 0)
	defer c.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("user pressed ^C")
	time.AfterFunc(20*time.Millisecond, func() { cancel(cause) })
	if err := c.Run(ctx, func(*Entry) error { return nil }); !errors.Is(err, cause) {
		t.Errorf("Run = %v, want the cause", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := c.Next(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next = %v, want the deadline", err)
	}
}

// TestLongLine: a line beyond the limit is cut and marked; the next line
// is intact.
func TestLongLine(t *testing.T) {
	long := "Jan  2 03:04:05 iPhone p[1] <Notice>: " + strings.Repeat("y", 300)
	wire := []byte(long + "\n\x00" + "Jan  2 03:04:05 iPhone q[2] <Notice>: short\n\x00")
	c := NewClient(fakeConn{iotest.HalfReader(bytes.NewReader(wire))}, 100)
	var got []Entry
	c.Run(context.Background(), func(e *Entry) error { got = append(got, *e); return nil })
	if len(got) != 2 || !got[0].Truncated || len(got[0].Raw) != 100 || got[0].Raw != long[:100] || got[1].Truncated || got[1].Message != "short" {
		t.Fatalf("got %+v", got)
	}
	// A stream that ends inside a line says so.
	c = NewClient(fakeConn{bytes.NewReader([]byte("Jan  2 partial"))}, 0)
	if _, err := c.Next(context.Background()); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "middle") {
		t.Errorf("Next on a cut stream = %v", err)
	}
}

// fakeConn is a read-only net.Conn over a reader.
type fakeConn struct {
	r interface{ Read([]byte) (int, error) }
}

func (f fakeConn) Read(b []byte) (int, error)       { return f.r.Read(b) }
func (f fakeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (f fakeConn) Close() error                     { return nil }
func (f fakeConn) LocalAddr() net.Addr              { return nil }
func (f fakeConn) RemoteAddr() net.Addr             { return nil }
func (f fakeConn) SetDeadline(time.Time) error      { return nil }
func (f fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (f fakeConn) SetWriteDeadline(time.Time) error { return nil }

// TestCopy: only the lines that pass are printed, each burst flushed.
func TestCopy(t *testing.T) {
	wire := testkit.ReadHex(t, "log03_syslog_relay_stream.hex")
	c := NewClient(fakeConn{bytes.NewReader(wire)}, 0)
	var out bytes.Buffer
	n, err := Copy(context.Background(), c, &Filter{Processes: []string{"SpringBoard"}}, NewPrinter(&out, Plain, nil))
	if !errors.Is(err, ErrClosed) || n != 1 || out.String() != "Jan  2 03:04:06 iPhone SpringBoard[58] <Error>: café test\n" {
		t.Errorf("Copy = %d, %v; printed %q", n, err, out.String())
	}
}

// BenchmarkCopy: the host's cost per line, from the received bytes to
// the printed text, without a filter and with a process filter.
func BenchmarkCopy(b *testing.B) {
	var wire []byte
	for i := range 1000 {
		e := Entry{Time: stamp(3, 9, 10, 11, i%60), DeviceName: "iPhone", Process: []string{"SpringBoard", "locationd"}[i%2], PID: 58 + i%2,
			Level: LevelNotice, Message: fmt.Sprintf("location update %d, accuracy 65 m — café", i), Parsed: true}
		wire = AppendLine(wire, &e)
	}
	for _, tt := range []struct {
		name string
		f    Filter
		fmt  Format
	}{{"plain", Filter{}, Plain}, {"process", Filter{Processes: []string{"locationd"}}, Plain}, {"json", Filter{}, JSON}} {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(wire)))
			for b.Loop() {
				c := NewClient(fakeConn{bytes.NewReader(wire)}, 0)
				Copy(context.Background(), c, &tt.f, NewPrinter(io.Discard, tt.fmt, nil))
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/line")
		})
	}
}

// TestJSONString: our JSON strings decode to the text, as encoding/json's
// would, for every byte and some UTF-8.
func TestJSONString(t *testing.T) {
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	for _, s := range []string{string(all), "café ☕ \"q\" \\ \u2028", "\xff\xfe", ""} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", appendJSONString(nil, s), err)
		}
		want, _ := json.Marshal(s)
		var w string
		json.Unmarshal(want, &w)
		if got != w {
			t.Errorf("%q decodes to %q, encoding/json's to %q", s, got, w)
		}
	}
}
