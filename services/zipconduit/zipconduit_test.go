package zipconduit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/ipa/ipatest"
	"github.com/iosmux/iosmux/internal/testkit"
	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/services/instproxy"
	"github.com/iosmux/iosmux/services/reach"
	"howett.net/plist"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// device serves the zip conduit over a real registry.
type device struct {
	reg *instproxy.Registry
	srv *Server
	wg  sync.WaitGroup
}

func newDevice(t testing.TB) *device {
	t.Helper()
	reg, err := instproxy.NewRegistry(instproxy.RegistryConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	d := &device{reg: reg}
	d.srv, err = NewServer(ServerConfig{NewStaging: reg.NewStaging, Install: func(ctx context.Context, dir string, p func(int, string)) error {
		_, err := reg.InstallStaged(ctx, dir, p)
		return err
	}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.wg.Wait)
	return d
}

func (d *device) UDID() string { return "00008120-0000000000000001" }
func (d *device) Open(ctx context.Context, s reach.Names) (net.Conn, error) {
	if s != reach.ZipConduit {
		return nil, &reach.NotListedError{Service: s.String()}
	}
	a, b := testkit.Pipe()
	d.wg.Go(func() { defer b.Close(); d.srv.Serve(context.Background(), b) })
	return a, nil
}

func TestInstall(t *testing.T) {
	d := newDevice(t)
	pkg := filepath.Join(t.TempDir(), "Demo.ipa")
	if err := ipatest.WriteFile(pkg, ipatest.Spec{BundleID: "com.example.zc", Version: "5", ShortVersion: "5.1", Bulk: 2 << 20, Developer: true,
		Files: map[string][]byte{"Frameworks/F.framework/F": []byte("framework")}}); err != nil {
		t.Fatal(err)
	}
	var steps []Step
	var statuses []string
	var sent int64
	in, err := Install(ctxT(t), d, pkg, SendConfig{Progress: func(p SendProgress) {
		if len(steps) == 0 || steps[len(steps)-1] != p.Step {
			steps = append(steps, p.Step)
		}
		switch p.Step {
		case StepStream:
			sent = p.Bytes
		case StepInstall:
			statuses = append(statuses, p.Status)
		}
	}})
	if err != nil || in.BundleID != "com.example.zc" || in.Version != "5" {
		t.Fatalf("Install = %+v, %v", in, err)
	}
	if !slices.Equal(steps, []Step{StepStream, StepInstall, StepDone}) || sent < 2<<20 || statuses[len(statuses)-1] != StatusDataComplete ||
		!slices.Contains(statuses, "InstallingApplication") {
		t.Errorf("steps %v, sent %d, statuses %v", steps, sent, statuses)
	}
	rec, ok := d.reg.Lookup("com.example.zc")
	if !ok || !rec.Developer || rec.Info["CFBundleShortVersionString"] != "5.1" {
		t.Fatalf("registered %+v, %v", rec, ok)
	}
	if b, _ := os.ReadFile(filepath.Join(d.reg.BundleDir(rec), "Frameworks/F.framework/F")); string(b) != "framework" {
		t.Errorf("framework file = %q", b)
	}
	if fi, err := os.Stat(filepath.Join(d.reg.BundleDir(rec), "Assets.car")); err != nil || fi.Size() != 2<<20 {
		t.Errorf("bulk file: %v, %v", fi, err)
	}
	// A package that is no app fails with the device's error, in the
	// progress dictionary.
	bad := filepath.Join(t.TempDir(), "bad.ipa")
	os.WriteFile(bad, []byte("nope"), 0o644)
	if _, err := Install(ctxT(t), d, bad, SendConfig{}); err == nil {
		t.Error("a broken package was sent")
	}
}

// stream is a hand-built transfer: InitTransfer, entries, end.
func stream(entries ...[]byte) []byte {
	b, _ := plist.Marshal(InitTransfer("x.ipa"), plist.XMLFormat)
	out := lockdown.AppendFrame(nil, b)
	for _, e := range entries {
		out = append(out, e...)
	}
	return append(out, centralDirMarker...)
}

func file(name, body string) []byte {
	return append(AppendEntryHeader(nil, name, crc32.ChecksumIEEE([]byte(body)), uint32(len(body))), body...)
}

func infoPlist(id string) string {
	b, _ := plist.Marshal(map[string]any{"CFBundleIdentifier": id}, plist.XMLFormat)
	return string(b)
}

// reply runs a hand-built stream against the device and returns its
// first message.
func (d *device) reply(t *testing.T, b []byte) lockdown.Message {
	t.Helper()
	conn, _ := d.Open(context.Background(), reach.ZipConduit)
	defer conn.Close()
	go conn.Write(b)
	m, err := lockdown.NewPlistConn(conn, 0).ReceiveMessage(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for m["Status"] == nil && m["Error"] == nil {
		if d, ok := m["InstallProgressDict"].(map[string]any); ok && d["Error"] != nil {
			return m
		}
		if m, err = lockdown.NewPlistConn(conn, 0).ReceiveMessage(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestServerRefusals: streams the device must not unpack, and packages it
// must not install, get the device's errors; nothing leaves staging.
func TestServerRefusals(t *testing.T) {
	d := newDevice(t)
	info := file("Payload/A.app/Info.plist", infoPlist("com.example.a"))
	corrupt := file("Payload/A.app/x", "hello")
	binary.LittleEndian.PutUint32(corrupt[14:], 1234)
	descriptor := file("Payload/A.app/y", "hello")
	descriptor[6] = 8
	for _, tc := range []struct {
		name   string
		stream []byte
		top    bool // a top-level ExtractionFailed rather than an install error
		want   string
	}{
		{"zip-slip", stream(info, file("../../evil", "x")), true, "ExtractionFailed"},
		{"absolute", stream(info, file("/tmp/evil", "x")), true, "ExtractionFailed"},
		{"bad crc", stream(info, corrupt), true, "ExtractionFailed"},
		{"data descriptor", stream(info, descriptor), true, "ExtractionFailed"},
		{"bad signature", stream(info, []byte("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")), true, "ExtractionFailed"},
		{"no app", stream(file("foo/bar", "x")), false, instproxy.ErrorPackageInspectionFailed},
		{"no bundle id", stream(file("Payload/A.app/Info.plist", infoPlist(""))), false, instproxy.ErrorPackageInspectionFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := d.reply(t, tc.stream)
			_, _, err := ParseProgress(m)
			var ze *Error
			if !errors.As(err, &ze) || ze.Name != tc.want {
				t.Errorf("reply %v, want %s", m, tc.want)
			}
			if _, top := m["Error"]; top != tc.top {
				t.Errorf("error at the top: %v, want %v", top, tc.top)
			}
			if _, err := os.Stat("/tmp/evil"); err == nil {
				t.Error("/tmp/evil was written")
			}
		})
	}
	if len(d.reg.Records()) != 0 {
		t.Errorf("refused streams installed %v", d.reg.Records())
	}
	// A hand-built stream of a good app installs.
	m := d.reply(t, stream(AppendEntryHeader(nil, "Payload/", 0, 0), info, file("Payload/A.app/A", "bin")))
	if p, done, err := ParseProgress(m); !done || err != nil {
		t.Errorf("good stream: %+v %v %v (%v)", p, done, err, m)
	}
}

// TestStreamLayout: the client's stream starts as go-ios's and appium's
// do — META-INF/, then the metadata plist counting the package's entries —
// and ends with the central-directory signature alone.
func TestStreamLayout(t *testing.T) {
	host, dev := testkit.Pipe()
	pkg := filepath.Join(t.TempDir(), "L.ipa")
	ipatest.WriteFile(pkg, ipatest.Spec{BundleID: "com.example.layout"})
	go Send(context.Background(), host, pkg, SendConfig{ReplyTimeout: time.Second})
	pc := lockdown.NewPlistConn(dev, 0)
	init, err := pc.ReceiveMessage(ctxT(t))
	if err != nil || init["MediaSubdir"] != "PublicStaging/L.ipa" || init["InstallTransferredDirectory"] != uint64(1) {
		t.Fatalf("InitTransfer %v, %v", init, err)
	}
	var names []string
	var meta Metadata
	hdr := make([]byte, localHeaderLen)
	for {
		if _, err := io.ReadFull(dev, hdr[:4]); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(hdr[:4], centralDirMarker) {
			break
		}
		io.ReadFull(dev, hdr[4:])
		h, err := ParseEntryHeader(hdr)
		if err != nil || h.Method != 0 || h.ExtraLen != 32 {
			t.Fatalf("header %+v, %v", h, err)
		}
		name := make([]byte, h.NameLen)
		io.ReadFull(dev, name)
		io.CopyN(io.Discard, dev, int64(h.ExtraLen))
		body := make([]byte, h.Size)
		io.ReadFull(dev, body)
		if crc32.ChecksumIEEE(body) != h.CRC {
			t.Errorf("%s: CRC mismatch", name)
		}
		if string(name) == MetadataName {
			if _, err := plist.Unmarshal(body, &meta); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, string(name))
	}
	if len(names) < 4 || names[0] != "META-INF/" || names[1] != MetadataName || meta.RecordCount != len(names) || meta.Version != 2 ||
		meta.StandardFilePerms != -32348 || meta.StandardDirectoryPerms != 16877 || !strings.HasPrefix(names[2], "Payload/") {
		t.Errorf("entries %v, metadata %+v", names, meta)
	}
	dev.Close()
}

// FuzzParseProgress: any plist as a progress message.
func FuzzParseProgress(f *testing.F) {
	for _, m := range []map[string]any{
		{"InstallProgressDict": map[string]any{"PercentComplete": 40, "Status": "VerifyingApplication"}},
		{"Status": "DataComplete"},
		{"InstallProgressDict": map[string]any{"Error": "ApplicationVerificationFailed", "ErrorDescription": "x"}},
		{"Error": "ExtractionFailed"},
	} {
		b, _ := plist.Marshal(m, plist.XMLFormat)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := lockdown.ParseMessage(b)
		if err != nil {
			return
		}
		p, done, err := ParseProgress(m)
		if err != nil && done || p.Percent > 100 {
			t.Fatalf("%+v %v %v", p, done, err)
		}
	})
}

// FuzzServerStream: any bytes after InitTransfer: the device answers or
// hangs up, never panics or writes outside its staging folder.
func FuzzServerStream(f *testing.F) {
	f.Add(file("Payload/A.app/Info.plist", infoPlist("a")))
	f.Add(append(file("../x", "y"), centralDirMarker...))
	base := f.TempDir()
	reg, _ := instproxy.NewRegistry(instproxy.RegistryConfig{Dir: filepath.Join(base, "reg")})
	srv, _ := NewServer(ServerConfig{NewStaging: reg.NewStaging, Install: func(ctx context.Context, dir string, p func(int, string)) error {
		_, err := reg.InstallStaged(ctx, dir, p)
		return err
	}, Timeout: 200 * time.Millisecond, Limits: ipaLimits()})
	f.Fuzz(func(t *testing.T, b []byte) {
		host, dev := testkit.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(context.Background(), dev); dev.Close() }()
		host.Write(stream(b))
		host.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, host)
		host.Close()
		<-done
		if ents, _ := os.ReadDir(base); len(ents) != 1 {
			t.Fatalf("written next to the registry: %v", ents)
		}
	})
}
