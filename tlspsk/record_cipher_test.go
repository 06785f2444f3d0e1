package tlspsk

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha512"
	"errors"
	"hash"
	"testing"
)

// cipherPair returns the client write cipher and an independent copy of it
// (as the server's read side would build it).
func cipherPair(s *cipherSuite) (recordCipher, recordCipher) {
	kb := make([]byte, s.keyBlockLen())
	for i := range kb {
		kb[i] = byte(i * 7)
	}
	w, _ := s.newCiphers(kb)
	r, _ := s.newCiphers(kb)
	return w, r
}

func TestSealOpenEverySuite(t *testing.T) {
	for _, s := range cipherSuites {
		t.Run(s.name, func(t *testing.T) {
			w, r := cipherPair(s)
			rnd := detRand(3)
			for seq, n := range []int{0, 1, 15, 16, 17, 255, 256, 1000, maxPlaintext} {
				payload := bytes.Repeat([]byte{byte(n)}, n)
				rec, err := w.seal(make([]byte, 0, 64), uint64(seq), recordTypeApplicationData, payload, rnd)
				if err != nil {
					t.Fatal(err)
				}
				if len(rec) > n+w.overhead() {
					t.Errorf("n=%d: record %d bytes, overhead bound %d", n, len(rec), w.overhead())
				}
				if m := r.openLen(len(rec)); m < n || (s.aead != nil && m != n) {
					t.Errorf("n=%d: openLen %d", n, m)
				}
				// Wrong sequence number or content type: the AAD/MAC differ.
				if _, err := r.open(nil, uint64(seq+1), recordTypeApplicationData, bytes.Clone(rec)); !errors.Is(err, ErrBadRecordMAC) {
					t.Errorf("n=%d: open with wrong seq: %v", n, err)
				}
				if _, err := r.open(nil, uint64(seq), recordTypeHandshake, bytes.Clone(rec)); !errors.Is(err, ErrBadRecordMAC) {
					t.Errorf("n=%d: open with wrong type: %v", n, err)
				}
				got, err := r.open(nil, uint64(seq), recordTypeApplicationData, bytes.Clone(rec))
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("n=%d: open: %v, equal %v", n, err, bytes.Equal(got, payload))
				}
				if m := r.openLen(len(rec)); m > 0 {
					// Into the caller's buffer, the fragment left as it was.
					dst := make([]byte, m)
					frag := bytes.Clone(rec)
					got, err := r.open(dst, uint64(seq), recordTypeApplicationData, frag)
					if err != nil || !bytes.Equal(got, payload) || (n > 0 && &got[0] != &dst[0]) || !bytes.Equal(frag, rec) {
						t.Fatalf("n=%d: open into dst: %v", n, err)
					}
				}
			}
		})
	}
}

// TestOpenRejectsEveryBitFlip flips each bit of a short record in turn.
func TestOpenRejectsEveryBitFlip(t *testing.T) {
	for _, s := range cipherSuites {
		t.Run(s.name, func(t *testing.T) {
			w, r := cipherPair(s)
			rec, _ := w.seal(nil, 0, recordTypeApplicationData, []byte("hello, tunnel"), detRand(4))
			for i := range len(rec) * 8 {
				bad := bytes.Clone(rec)
				bad[i/8] ^= 1 << (i % 8)
				if _, err := r.open(nil, 0, recordTypeApplicationData, bad); !errors.Is(err, ErrBadRecordMAC) {
					t.Fatalf("bit %d flipped: got %v", i, err)
				}
			}
			for n := range len(rec) {
				if _, err := r.open(nil, 0, recordTypeApplicationData, bytes.Clone(rec[:n])); !errors.Is(err, ErrBadRecordMAC) {
					t.Fatalf("truncated to %d: got %v", n, err)
				}
			}
		})
	}
}

func TestCBCPadding(t *testing.T) {
	tests := []struct {
		name   string
		body   []byte
		remove int
		good   int
	}{
		{"zero padding", []byte{9, 9, 0}, 1, 1},
		{"three", []byte{9, 2, 2, 2}, 3, 1},
		{"whole body", []byte{3, 3, 3, 3}, 4, 1},
		{"too long", []byte{4, 4, 4, 4}, 5, 0},
		{"wrong byte", []byte{9, 2, 1, 2}, 3, 0},
		{"255", append([]byte{1}, bytes.Repeat([]byte{255}, 256)...), 256, 1},
		{"255 with a bad byte", append([]byte{1, 254}, bytes.Repeat([]byte{255}, 255)...), 256, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			remove, good := cbcPadding(tt.body)
			if remove != tt.remove || good != tt.good {
				t.Errorf("got remove %d good %d, want %d %d", remove, good, tt.remove, tt.good)
			}
		})
	}
}

// cbcMACs are the HMAC hashes of the CBC suites, named independently of
// the suite table.
var cbcMACs = map[uint16]func() hash.Hash{
	TLS_PSK_WITH_AES_256_CBC_SHA384: sha512.New384,
	TLS_PSK_WITH_AES_128_CBC_SHA:    sha1.New,
}

// handMadeCBC builds a CBC record of suite id by hand (RFC 5246 §6.2.3.2)
// under cipherPair's keys: iv, then AES-CBC over payload ‖ HMAC ‖ p+1
// bytes of value p (one padding byte flipped when corrupt). It returns nil
// when that is not a whole number of blocks.
func handMadeCBC(id uint16, seq uint64, payload []byte, p int, iv []byte, corrupt bool) []byte {
	s := suiteByID(id)
	kb := make([]byte, s.keyBlockLen())
	for i := range kb {
		kb[i] = byte(i * 7)
	}
	macKey, key := kb[:s.macLen], kb[2*s.macLen:2*s.macLen+s.keyLen]
	mac := hmac.New(cbcMACs[id], macKey)
	var ad [13]byte
	mac.Write(additionalData(&ad, seq, recordTypeApplicationData, len(payload)))
	mac.Write(payload)
	pt := mac.Sum(bytes.Clone(payload))
	for range p + 1 {
		pt = append(pt, byte(p))
	}
	if corrupt {
		pt[len(pt)-2] ^= 0x80
	}
	if len(pt)%16 != 0 {
		return nil
	}
	block, _ := aes.NewCipher(key)
	out := append(bytes.Clone(iv), pt...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out[16:], out[16:])
	return out
}

// TestCBCOpenHandMade builds CBC records by hand with a valid MAC and
// chosen padding: every legal padding length is accepted and a bad padding
// byte is rejected even under a correct MAC.
func TestCBCOpenHandMade(t *testing.T) {
	for id := range cbcMACs {
		s := suiteByID(id)
		_, r := cipherPair(s)
		payload := []byte("sixteen bytes!!!x")
		iv := bytes.Repeat([]byte{0xa5}, 16)
		build := func(seq uint64, p int, corrupt bool) []byte {
			return handMadeCBC(id, seq, payload, p, iv, corrupt)
		}
		t.Run(s.name, func(t *testing.T) {
			legal := 0
			for p := range 256 {
				rec := build(uint64(p), p, false)
				if rec == nil {
					continue
				}
				legal++
				got, err := r.open(nil, uint64(p), recordTypeApplicationData, rec)
				if err != nil || !bytes.Equal(got, payload) {
					t.Fatalf("padding %d: %v", p, err)
				}
				if p == 0 {
					continue
				}
				if _, err := r.open(nil, uint64(p), recordTypeApplicationData, build(uint64(p), p, true)); !errors.Is(err, ErrBadRecordMAC) {
					t.Fatalf("padding %d with a bad byte: got %v", p, err)
				}
			}
			if legal < 15 {
				t.Fatalf("only %d padding lengths tried", legal)
			}
		})
	}
}

// TestCBCSealHandMade compares seal with a record built by hand (RFC 5246
// §6.2.3.2: IV, then CBC over payload ‖ MAC ‖ minimal padding) for lengths
// on both sides of a block boundary, so the payload's whole blocks, which
// seal encrypts straight from the caller's buffer, and its tail, which it
// encrypts next to the MAC, both count.
func TestCBCSealHandMade(t *testing.T) {
	for id := range cbcMACs {
		s := suiteByID(id)
		w, _ := cipherPair(s)
		t.Run(s.name, func(t *testing.T) {
			for seq, n := range []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 1280, maxPlaintext} {
				payload := make([]byte, n)
				detRand(byte(n)).Read(payload)
				iv := bytes.Repeat([]byte{byte(seq)}, 16)
				got, err := w.seal([]byte("hdr"), uint64(seq), recordTypeApplicationData, payload, bytes.NewReader(iv))
				if err != nil {
					t.Fatal(err)
				}
				p := 15 - (n+s.macLen)%16 // minimal padding
				want := append([]byte("hdr"), handMadeCBC(id, uint64(seq), payload, p, iv, false)...)
				if !bytes.Equal(got, want) {
					t.Fatalf("n=%d: seal differs from the hand-made record", n)
				}
			}
		})
	}
}
