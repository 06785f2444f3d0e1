package pairing

import (
	"context"
	"crypto/ed25519"
	"testing"
)

// BenchmarkVerifyMessages is the crypto of one pair-verify, both roles.
func BenchmarkVerifyMessages(b *testing.B) {
	hostKey := ed25519.NewKeyFromSeed(vecHostSeed)
	pub := hostKey.Public().(ed25519.PublicKey)
	devKey := ed25519.NewKeyFromSeed(vecDeviceSeed)
	lookup := func(string) (ed25519.PublicKey, bool) { return pub, true }
	for b.Loop() {
		h, _ := newVerifyHost(zeroRand{})
		eph, _ := consumeVerifyM1(h.createM1())
		d, _ := newVerifyDevice(zeroRand{}, eph)
		if err := h.consumeM2(d.createM2(vecDeviceID, devKey)); err != nil {
			b.Fatal(err)
		}
		if _, err := d.consumeM3(h.createM3(vecHostID, hostKey), lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetupMessages is the crypto of one pair-setup, both roles
// (dominated by the 3072-bit SRP exponentiations).
func BenchmarkSetupMessages(b *testing.B) {
	hostKey := ed25519.NewKeyFromSeed(vecHostSeed)
	devKey := ed25519.NewKeyFromSeed(vecDeviceSeed)
	info, _ := vecHostInfo.encode()
	for b.Loop() {
		d, _ := newSetupDevice(countRand{}, trustPassword)
		salt, pubB, _ := consumeSetupM2(d.createM2())
		h, err := newSetupHost(countRand{}, trustPassword, salt, pubB)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.consumeM3(h.createM3()); err != nil {
			b.Fatal(err)
		}
		if err := h.consumeM4(d.createM4()); err != nil {
			b.Fatal(err)
		}
		if _, err := d.consumeM5(h.createM5(vecHostID, hostKey, info)); err != nil {
			b.Fatal(err)
		}
		if _, err := h.consumeM6(d.createM6(vecDeviceID, devKey, info)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPairInMemory is a whole Pair (setup, save, reconnect, verify)
// over RPPairing on net.Pipe, record written to a temp folder.
func BenchmarkPairInMemory(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		td := &testDevice{hosts: &MemoryHosts{}}
		dev, err := NewServer(&ServerConfig{Identity: vecDevice, Handshake: vecHandshake, Hosts: td.hosts})
		if err != nil {
			b.Fatal(err)
		}
		td.dev = dev
		dir := b.TempDir()
		b.StartTimer()
		if _, err := Pair(context.Background(), &PairConfig{Host: hostConfig(), Dial: td.dial, Store: RecordStore{Dir: dir}}); err != nil {
			b.Fatal(err)
		}
		td.wait()
	}
}

type zeroRand struct{}

func (zeroRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0x42
	}
	return len(p), nil
}

// countRand gives distinct non-trivial bytes so SRP values are ordinary.
type countRand struct{}

func (countRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*31 + 7)
	}
	return len(p), nil
}
