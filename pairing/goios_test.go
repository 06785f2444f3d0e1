package pairing

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"howett.net/plist"
)

// writeGoIOSDir lays out a folder the way go-ios v1.3.2 writes it (binary
// plists with its struct tags), plus one peers/ entry as macOS keeps them.
func writeGoIOSDir(t *testing.T, withPeer bool) (string, ed25519.PrivateKey) {
	t.Helper()
	dir := t.TempDir()
	key := ed25519.NewKeyFromSeed(seq(0x70, 32))
	self := GoIOSIdentity{Identifier: "6F1C0C3E-2B0A-4D7B-9C43-0F5E5B8B9A11", IRK: seq(0x90, 16),
		PrivateKey: key.Seed(), PublicKey: key.Public().(ed25519.PublicKey)}
	b, err := plist.Marshal(self, plist.BinaryFormat)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "selfIdentity.plist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if withPeer {
		info, _ := vecDevice.encodeInfo()
		peer := GoIOSPeer{Identifier: vecDeviceID, Info: info, IRK: vecDeviceIRK, Model: "iPhone14,2", Name: "Test iPhone",
			PublicKey: ed25519.NewKeyFromSeed(vecDeviceSeed).Public().(ed25519.PublicKey)}
		pb, _ := plist.Marshal(peer, plist.BinaryFormat)
		os.MkdirAll(filepath.Join(dir, "peers"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, "peers", vecDeviceID+".plist"), pb, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, key
}

func TestImportGoIOS(t *testing.T) {
	ctx := testCtx(t)
	dir, key := writeGoIOSDir(t, true)
	store := RecordStore{Dir: t.TempDir()}
	got, err := ImportGoIOS(dir, store, []string{"00008030-000000000000002E"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != vecDeviceUDID || got[1].ID != "00008030-000000000000002E" {
		t.Fatalf("imported %+v", got)
	}
	rec, err := store.Load(vecDeviceUDID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.HostIdentifier != "6F1C0C3E-2B0A-4D7B-9C43-0F5E5B8B9A11" || rec.PeerUDID != vecDeviceUDID || rec.PeerName != "Test iPhone" {
		t.Errorf("record %+v", rec)
	}
	// The imported record verifies against a device that paired go-ios.
	td := newTestDevice(t, nil)
	td.hosts.AddHost(PairedHost{Identifier: rec.HostIdentifier, PublicKey: key.Public().(ed25519.PublicKey)})
	res, err := Pair(ctx, &PairConfig{Host: hostConfig(), Dial: td.dial, Store: store})
	if err != nil || !res.AlreadyPaired {
		t.Fatalf("verify with the imported record: %+v, %v", res, err)
	}
}

func TestImportGoIOSErrors(t *testing.T) {
	dir, _ := writeGoIOSDir(t, false)
	if _, err := ImportGoIOS(dir, RecordStore{Dir: t.TempDir()}, nil); err == nil {
		t.Error("no peers and no UDIDs: imported")
	}
	if _, err := ImportGoIOS(t.TempDir(), RecordStore{Dir: t.TempDir()}, []string{"x"}); err == nil {
		t.Error("missing selfIdentity.plist: imported")
	}
	bad := t.TempDir()
	b, _ := plist.Marshal(GoIOSIdentity{Identifier: "X", PrivateKey: seq(1, 32), PublicKey: make([]byte, 32)}, plist.BinaryFormat)
	os.WriteFile(filepath.Join(bad, "selfIdentity.plist"), b, 0o644)
	if _, err := ImportGoIOS(bad, RecordStore{Dir: t.TempDir()}, []string{"x"}); err == nil {
		t.Error("mismatched keys: imported")
	}
}
