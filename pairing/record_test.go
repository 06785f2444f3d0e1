package pairing

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"howett.net/plist"
)

// pymobiledevice3Keys are the keys pymobiledevice3 writes or reads in a
// RemotePairing record and their plist types (remotepairing.md §8.1).
var pymobiledevice3Keys = map[string]string{
	"private_key": "data", "public_key": "data", "remote_unlock_host_key": "string",
	"host_identifier": "string", "host_alt_irk": "data", "peer_alt_irk": "data",
	"peer_udid": "string", "peer_model": "string", "peer_name": "string",
}

func vecRecordXML(t *testing.T) string {
	return loadSetupFile(t).Record.XML
}

// TestRecordMatchesPymobiledevice3 writes the record of pair_setup.json and
// compares it with the XML pymobiledevice3 wrote, byte for byte.
func TestRecordMatchesPymobiledevice3(t *testing.T) {
	f := loadSetupFile(t)
	r := &Record{
		PrivateKey:          vecHostSeed,
		PublicKey:           ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey),
		RemoteUnlockHostKey: f.Record.UnlockHostKey,
	}
	if got := string(r.Marshal()); got != f.Record.XML {
		t.Errorf("Marshal:\n%s\nwant:\n%s", got, f.Record.XML)
	}
	back, err := ParseRecord([]byte(f.Record.XML))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.PrivateKey, vecHostSeed) || back.RemoteUnlockHostKey != f.Record.UnlockHostKey || back.HostIdentifier != "" {
		t.Errorf("ParseRecord: %v", back)
	}
}

// TestRecordKeysAndTypes: a record made by a full pairing holds only keys
// pymobiledevice3 knows, each with pymobiledevice3's type; long data wraps
// as plistlib does and the XML parses with a generic plist reader.
func TestRecordKeysAndTypes(t *testing.T) {
	r := &Record{
		PrivateKey: vecHostSeed, PublicKey: ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey),
		RemoteUnlockHostKey: "a<b>&c", HostIdentifier: vecHostID, HostAltIRK: seq(1, 16),
		PeerAltIRK: vecDeviceIRK, PeerUDID: vecDeviceUDID, PeerModel: "iPhone14,2", PeerName: "Test iPhone",
	}
	x := r.Marshal()
	var m map[string]any
	if _, err := plist.Unmarshal(x, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(pymobiledevice3Keys) {
		t.Errorf("%d keys, want %d", len(m), len(pymobiledevice3Keys))
	}
	for k, v := range m {
		want, ok := pymobiledevice3Keys[k]
		if !ok {
			t.Errorf("key %q is not a pymobiledevice3 key", k)
			continue
		}
		switch v.(type) {
		case []byte:
			if want != "data" {
				t.Errorf("%s is data, want %s", k, want)
			}
		case string:
			if want != "string" {
				t.Errorf("%s is a string, want %s", k, want)
			}
		default:
			t.Errorf("%s has type %T", k, v)
		}
	}
	if m["remote_unlock_host_key"] != "a<b>&c" {
		t.Errorf("escaping: %q", m["remote_unlock_host_key"])
	}
	back, err := ParseRecord(x)
	if err != nil || back.PeerName != "Test iPhone" || !bytes.Equal(back.PeerAltIRK, vecDeviceIRK) {
		t.Errorf("round trip: %v, %v", back, err)
	}
	// A 60-byte value wraps after 51 bytes like plistlib.
	long := &Record{PrivateKey: vecHostSeed, PublicKey: r.PublicKey, HostAltIRK: seq(0, 60)}
	if !strings.Contains(string(long.Marshal()), "\t<data>\n\tAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEy\n\tMzQ1Njc4OTo7\n\t</data>\n") {
		t.Errorf("wrapping:\n%s", long.Marshal())
	}
	// Binary plists are read too.
	bin, err := plist.Marshal(map[string]any{"private_key": vecHostSeed, "public_key": []byte(r.PublicKey), "remote_unlock_host_key": ""}, plist.BinaryFormat)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRecord(bin); err != nil {
		t.Errorf("binary record: %v", err)
	}
}

func TestParseRecordErrors(t *testing.T) {
	pub := ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey)
	tests := []struct {
		name string
		m    map[string]any
	}{
		{"missing private", map[string]any{"public_key": []byte(pub)}},
		{"short private", map[string]any{"private_key": vecHostSeed[:31], "public_key": []byte(pub)}},
		{"string private", map[string]any{"private_key": "x", "public_key": []byte(pub)}},
		{"mismatched public", map[string]any{"private_key": vecHostSeed, "public_key": make([]byte, 32)}},
		{"int identifier", map[string]any{"private_key": vecHostSeed, "public_key": []byte(pub), "host_identifier": 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := plist.Marshal(tt.m, plist.XMLFormat)
			if _, err := ParseRecord(b); err == nil {
				t.Error("parsed")
			}
		})
	}
	if _, err := ParseRecord([]byte("not a plist")); err == nil {
		t.Error("garbage parsed")
	}
}

// TestPymobiledevice3RecordIsUsed: a record file written the way
// pymobiledevice3 writes it (the exact XML of the vectors, no
// host_identifier) verifies against a device that knows that host.
func TestPymobiledevice3RecordIsUsed(t *testing.T) {
	ctx := testCtx(t)
	td := newTestDevice(t, nil)
	td.hosts.AddHost(PairedHost{Identifier: vecHostID, PublicKey: ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey)})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "remote_"+vecDeviceUDID+".plist"), []byte(vecRecordXML(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: RecordStore{Dir: dir}})
	if err != nil || !res.AlreadyPaired {
		t.Fatalf("Pair with a pymobiledevice3 record: %+v, %v", res, err)
	}
}

func TestStoreListDelete(t *testing.T) {
	s := RecordStore{Dir: filepath.Join(t.TempDir(), "new")}
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("missing dir: %v, %v", l, err)
	}
	r := &Record{PrivateKey: vecHostSeed, PublicKey: ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey)}
	for _, id := range []string{"B", "A"} {
		if _, err := s.Save(id, r); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(s.Dir, "remote_C.plist"), []byte("junk"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, ".remote_D.plist.tmp-1"), []byte("junk"), 0o600)
	os.WriteFile(filepath.Join(s.Dir, "other.plist"), []byte("junk"), 0o600)
	l, err := s.List()
	if err != nil || len(l) != 3 || l[0].ID != "A" || l[1].ID != "B" || l[2].ID != "C" || l[2].Err == nil || l[0].Record == nil {
		t.Fatalf("List: %+v, %v", l, err)
	}
	if st, _ := os.Stat(s.Dir); st.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", st.Mode())
	}
	if err := s.Delete("A"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("A"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second delete: %v", err)
	}
	if _, err := s.Load("A"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load deleted: %v", err)
	}
	for _, bad := range []string{"", "a.b", "../x", "a/b"} {
		if _, err := s.Save(bad, r); !errors.Is(err, ErrBadIdentifier) {
			t.Errorf("Save(%q): %v", bad, err)
		}
	}
}

const childEnv = "IOSMUX_PAIRING_WRITER_CHILD"

// TestRecordWriterChild is the child process of TestKilledWriteKeepsRecord:
// it saves two records in turn, forever, saying so after each save.
func TestRecordWriterChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		return // only meaningful as the child
	}
	s := RecordStore{Dir: dir}
	for i := 0; ; i++ {
		if _, err := s.Save(vecDeviceUDID, killRecord(i%2)); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(os.Stdout, i)
	}
}

// killRecord is one of the two records the child writes; both are larger
// than one write, so a kill can land inside one.
func killRecord(i int) *Record {
	return &Record{PrivateKey: seq(byte(0x50+i), 32), PublicKey: ed25519.NewKeyFromSeed(seq(byte(0x50+i), 32)).Public().(ed25519.PublicKey),
		RemoteUnlockHostKey: strings.Repeat(string(rune('a'+i)), 64<<10)}
}

// TestKilledWriteKeepsRecord reads the record while another process saves
// it over and over, then kills that process (internal/atomicfile tests a
// kill at a chosen point): every read and the record left after the kill
// is one of the two, whole, the folder lists one record, and the next save
// succeeds.
func TestKilledWriteKeepsRecord(t *testing.T) {
	dir := t.TempDir()
	s := RecordStore{Dir: dir}
	if _, err := s.Save(vecDeviceUDID, killRecord(1)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRecordWriterChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	whole := func(when string) {
		t.Helper()
		got, err := s.Load(vecDeviceUDID)
		if err != nil {
			t.Fatalf("record %s: %v", when, err)
		}
		if r0, r1 := killRecord(0), killRecord(1); !bytes.Equal(got.Marshal(), r0.Marshal()) && !bytes.Equal(got.Marshal(), r1.Marshal()) {
			t.Fatalf("record %s is neither of the two written", when)
		}
	}
	// Read while the child writes: every read sees one record whole.
	rd := bufio.NewReader(out)
	for range 20 {
		if line, err := rd.ReadString('\n'); err != nil {
			t.Fatalf("child said %q, %v", line, err)
		}
		for range 10 {
			whole("while saved over")
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	whole("after the kill")
	if l, _ := s.List(); len(l) != 1 {
		t.Errorf("List sees %d records", len(l))
	}
	if _, err := s.Save(vecDeviceUDID, killRecord(0)); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(strings.TrimSpace(`<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>private_key</key><data>AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=</data>
<key>public_key</key><data>ebVWLo/mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ=</data></dict></plist>`)))
	bin, _ := plist.Marshal(map[string]any{"private_key": seq(1, 32), "peer_name": "x"}, plist.BinaryFormat)
	f.Add(bin)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		back, err := ParseRecord(r.Marshal())
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if string(back.Marshal()) != string(r.Marshal()) {
			t.Fatal("unstable")
		}
	})
}

func TestStoreOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chown needs root (CI runs as root)")
	}
	s := RecordStore{Dir: filepath.Join(t.TempDir(), "new"), Owner: &FileOwner{UID: 4242, GID: 4343}}
	r := &Record{PrivateKey: vecHostSeed, PublicKey: ed25519.NewKeyFromSeed(vecHostSeed).Public().(ed25519.PublicKey)}
	p, err := s.Save("X", r)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{s.Dir, p} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if sys.Uid != 4242 || sys.Gid != 4343 {
			t.Errorf("%s owned by %d:%d", path, sys.Uid, sys.Gid)
		}
	}
}
