package afc

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/iosmux/iosmux/internal/testkit"
)

// vector reads testdata/<name>*.hex (copied from the shared AFC vectors,
// written from the packet layout and checked against go-ios's client).
func vector(t testing.TB, prefix string) []byte {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join("testdata", prefix+"_*.hex"))
	if len(m) != 1 {
		t.Fatalf("vector %s: %v", prefix, m)
	}
	return testkit.ReadHex(t, filepath.Base(m[0]))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestVectorsParse: every vector is one well-formed packet and
// re-encodes to the same bytes.
func TestVectorsParse(t *testing.T) {
	for i := 1; i <= 19; i++ {
		name := "afc" + twoDigits(i)
		b := vector(t, name)
		p, err := ParsePacket(b, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := p.Append(nil); !bytes.Equal(got, b) {
			t.Errorf("%s: re-encoded %x\nwant %x", name, got, b)
		}
		for n := range b {
			if _, err := ParsePacket(b[:n], 0); err == nil {
				t.Errorf("%s: %d-byte prefix parsed", name, n)
			}
		}
	}
	fi, err := ParseFileInfo(mustPacket(t, "afc04").Data)
	if err != nil || !fi.IsDir() || fi.Size != 64 || fi.Links != 2 || fi.ModTime.Unix() != 1767323045 {
		t.Errorf("afc04 = %+v, %v", fi, err)
	}
	di, err := ParseDeviceInfo(mustPacket(t, "afc18").Data)
	if err != nil || di.Model != "iPhone15,3" || di.TotalBytes != 127989493760 || di.FreeBytes != 63994746880 || di.BlockSize != 4096 {
		t.Errorf("afc18 = %+v, %v", di, err)
	}
	if got := di.KV().Append(nil); !bytes.Equal(got, mustPacket(t, "afc18").Data) {
		t.Errorf("afc18 re-encoded %q", got)
	}
}

func twoDigits(i int) string { return string([]byte{'0' + byte(i/10), '0' + byte(i%10)}) }

func mustPacket(t testing.TB, name string) Packet {
	t.Helper()
	p, err := ParsePacket(vector(t, name), 0)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestVectorsClient: the client's requests for the vectors' sequence are
// the vectors byte for byte (packet numbers from 0, as pmd3 counts), and it
// reads the vectors' replies.
func TestVectorsClient(t *testing.T) {
	host, dev := testkit.Pipe()
	c := NewClient(host, nil)
	defer c.Close()
	ctx := ctxT(t)
	// The scripted device: for each request, the expected bytes and the
	// reply to send.
	status := func(num uint64, st Status) []byte {
		return Packet{Num: num, Op: OpStatus, Args: le64(uint64(st))}.Append(nil)
	}
	script := []struct{ req, rep []byte }{
		{vector(t, "afc01"), vector(t, "afc02")},
		{vector(t, "afc03"), vector(t, "afc04")},
		{vector(t, "afc05"), vector(t, "afc06")},
		{vector(t, "afc07"), vector(t, "afc08")},
		{vector(t, "afc09"), vector(t, "afc10")},
		{vector(t, "afc11"), vector(t, "afc12")},
		{vector(t, "afc13"), status(6, StatusSuccess)},
		{vector(t, "afc14"), vector(t, "afc15")},
		{vector(t, "afc16"), status(8, StatusSuccess)},
		{vector(t, "afc17"), vector(t, "afc18")},
		{vector(t, "afc19"), status(10, StatusSuccess)},
	}
	errc := make(chan error, 1)
	go func() {
		defer dev.Close()
		for i, s := range script {
			got := make([]byte, len(s.req))
			if _, err := io.ReadFull(dev, got); err != nil {
				errc <- err
				return
			}
			if !bytes.Equal(got, s.req) {
				t.Errorf("request %d: %x\nwant %x", i, got, s.req)
			}
			if _, err := dev.Write(s.rep); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	names, err := c.ReadDir(ctx, "/")
	if want := []string{"DCIM", "Downloads", "Books", "PublicStaging"}; err != nil || strings.Join(names, ",") != strings.Join(want, ",") {
		t.Errorf("ReadDir = %q, %v", names, err)
	}
	if fi, err := c.Stat(ctx, "/DCIM"); err != nil || !fi.IsDir() {
		t.Errorf("Stat = %+v, %v", fi, err)
	}
	if err := c.Mkdir(ctx, "/PublicStaging"); err != nil {
		t.Error(err)
	}
	f, err := c.Open(ctx, "/PublicStaging/demo.ipa", WriteOnly)
	if err != nil || f.Handle() != 1 {
		t.Fatalf("Open = %v, %v", f, err)
	}
	if _, err := f.WriteContext(ctx, []byte("hello")); err != nil {
		t.Error(err)
	}
	buf := make([]byte, 4096)
	if n, err := f.ReadContext(ctx, buf); err != nil || string(buf[:n]) != "hello" {
		t.Errorf("Read = %q, %v", buf[:n], err)
	}
	if err := f.CloseContext(ctx); err != nil {
		t.Error(err)
	}
	err = c.Remove(ctx, "/PublicStaging/missing.ipa")
	var ae *Error
	if !isNotExist(err) || !errors.As(err, &ae) || ae.Status != StatusObjectNotFound {
		t.Errorf("Remove of a missing file: %v", err)
	}
	if err := c.Rename(ctx, "/a.txt", "/b.txt"); err != nil {
		t.Error(err)
	}
	if di, err := c.DeviceInfo(ctx); err != nil || di.Model != "iPhone15,3" {
		t.Errorf("DeviceInfo = %+v, %v", di, err)
	}
	if err := c.RemoveAll(ctx, "/PublicStaging/tmpdir"); err != nil {
		t.Error(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestVectorsServer: the device role answers the vectors' requests with
// the vectors' replies, on a tree holding the root folders a device has.
func TestVectorsServer(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"DCIM", "Downloads", "Books", "PublicStaging"} {
		os.Mkdir(filepath.Join(root, d), 0o755)
	}
	tm := time.Unix(1767323045, 0)
	os.Chtimes(filepath.Join(root, "DCIM"), tm, tm)
	di, _ := ParseDeviceInfo(mustPacket(t, "afc18").Data)
	srv, err := NewServer(ServerConfig{Root: root, DeviceInfo: func() DeviceInfo { return di }})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(conn net.Conn, req []byte) Packet {
		t.Helper()
		if _, err := conn.Write(req); err != nil {
			t.Fatal(err)
		}
		hdr := make([]byte, HeaderSize)
		if _, err := io.ReadFull(conn, hdr); err != nil {
			t.Fatal(err)
		}
		h, err := ParseHeader(hdr)
		if err != nil {
			t.Fatal(err)
		}
		rest := make([]byte, h.EntireLen-HeaderSize)
		if _, err := io.ReadFull(conn, rest); err != nil {
			t.Fatal(err)
		}
		p, err := ParsePacket(append(hdr, rest...), 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	serve := func() net.Conn {
		host, dev := testkit.Pipe()
		done := make(chan struct{})
		go func() { defer close(done); srv.Serve(context.Background(), dev); dev.Close() }()
		t.Cleanup(func() { host.Close(); <-done })
		return host
	}
	conn := serve()
	// afc02: same names; the order of a listing is the device's own.
	got := roundTrip(conn, vector(t, "afc01"))
	want := mustPacket(t, "afc02")
	if got.Num != want.Num || got.Op != OpData || len(got.Args) != 0 || !sameNames(got.Data, want.Data) {
		t.Errorf("afc02: got %+v", got)
	}
	// afc04: every field but the ones the host file system decides.
	got = roundTrip(conn, vector(t, "afc03"))
	gi, err := ParseFileInfo(got.Data)
	wi, _ := ParseFileInfo(mustPacket(t, "afc04").Data)
	if err != nil || got.Num != 1 || gi.Type != wi.Type || gi.Size != wi.Size || gi.Links != wi.Links || !gi.ModTime.Equal(wi.ModTime) {
		t.Errorf("afc04: got %+v (%v), want %+v", gi, err, wi)
	}
	for i, k := range []string{"st_size", "st_blocks", "st_nlink", "st_ifmt", "st_mtime", "st_birthtime"} {
		if gi.Raw[i].Key != k {
			t.Errorf("afc04 key %d = %q, want %q", i, gi.Raw[i].Key, k)
		}
	}
	exact := func(req, rep string) {
		t.Helper()
		got := roundTrip(conn, vector(t, req)).Append(nil)
		if want := vector(t, rep); !bytes.Equal(got, want) {
			t.Errorf("reply to %s: %x\nwant %s: %x", req, got, rep, want)
		}
	}
	exact("afc05", "afc06")
	exact("afc07", "afc08")
	exact("afc09", "afc10")
	exact("afc14", "afc15")
	exact("afc17", "afc18")
	if b, _ := os.ReadFile(filepath.Join(root, "PublicStaging", "demo.ipa")); string(b) != "hello" {
		t.Errorf("demo.ipa holds %q", b)
	}
	// afc11/afc12: a new connection opens the file for reading as handle
	// 1; the vector's READ (packet 5) gets the vector's DATA.
	conn = serve()
	open := Packet{Num: 4, Op: OpFileOpen, Args: appendPath(le64(uint64(ReadOnly)), "/PublicStaging/demo.ipa")}
	if p := roundTrip(conn, open.Append(nil)); p.Op != OpFileOpenRes {
		t.Fatalf("open for reading: %+v", p)
	}
	if got, want := roundTrip(conn, vector(t, "afc11")).Append(nil), vector(t, "afc12"); !bytes.Equal(got, want) {
		t.Errorf("reply to afc11: %x\nwant %x", got, want)
	}
}

func sameNames(a, b []byte) bool {
	x, y := parseNames(a), parseNames(b)
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, "/") == strings.Join(y, "/")
}
