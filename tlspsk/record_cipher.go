package tlspsk

import (
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"io"
	"slices"
)

// recordCipher protects the records of one direction once ChangeCipherSpec
// has taken effect. Implementations keep scratch space (nonce, MAC input),
// so a value belongs to one halfConn and is used under its lock; seal and
// open allocate nothing.
type recordCipher interface {
	// overhead is the most bytes seal adds to a payload.
	overhead() int
	// seal appends the protected fragment of payload (content type typ,
	// sequence number seq) to out. payload must not overlap out's spare
	// capacity. rand supplies CBC IVs.
	seal(out []byte, seq uint64, typ uint8, payload []byte, rand io.Reader) ([]byte, error)
	// open authenticates and decrypts fragment, returning the plaintext. It
	// decrypts in place when dst is nil; otherwise into dst, which must
	// have room for openLen(len(fragment)) bytes and not overlap fragment;
	// the plaintext then starts at dst[0], and dst past it may be
	// overwritten (CBC puts its MAC and padding there). Every
	// authentication failure is ErrBadRecordMAC.
	open(dst []byte, seq uint64, typ uint8, fragment []byte) ([]byte, error)
	// openLen is the room open needs in dst for a fragment of this length:
	// the plaintext length for AEAD, plaintext, MAC and padding for CBC
	// (whose plaintext length only decryption tells). It is ≤ 0 for a
	// fragment too short to hold a record.
	openLen(fragmentLen int) int
}

// additionalData writes seq_num || type || version || length, the AEAD
// additional data and the start of the CBC MAC input (RFC 5246 §6.2.3.1,
// §6.2.3.3).
func additionalData(b *[13]byte, seq uint64, typ uint8, n int) []byte {
	binary.BigEndian.PutUint64(b[:8], seq)
	b[8] = typ
	binary.BigEndian.PutUint16(b[9:11], VersionTLS12)
	binary.BigEndian.PutUint16(b[11:13], uint16(n))
	return b[:]
}

// aeadCipher is AES-GCM (RFC 5288: 4-byte fixed IV from the key block and
// an 8-byte explicit nonce sent before the ciphertext; we send the sequence
// number, as crypto/tls and go-ios do) or ChaCha20-Poly1305 (RFC 7905: a
// 12-byte IV XORed with the sequence number, nothing explicit).
type aeadCipher struct {
	aead     cipher.AEAD
	explicit bool
	nonce    [12]byte
	fixedIV  [12]byte
	ad       [13]byte
}

const explicitNonceLen = 8

func (c *aeadCipher) explicitLen() int {
	if c.explicit {
		return explicitNonceLen
	}
	return 0
}

func (c *aeadCipher) overhead() int { return c.explicitLen() + c.aead.Overhead() }

func (c *aeadCipher) openLen(n int) int { return n - c.overhead() }

// xorNonce builds the RFC 7905 nonce for seq.
func (c *aeadCipher) xorNonce(seq uint64) []byte {
	c.nonce = c.fixedIV
	for i := range 8 {
		c.nonce[4+i] ^= byte(seq >> (56 - 8*i))
	}
	return c.nonce[:]
}

func (c *aeadCipher) seal(out []byte, seq uint64, typ uint8, payload []byte, _ io.Reader) ([]byte, error) {
	var nonce []byte
	if c.explicit {
		binary.BigEndian.PutUint64(c.nonce[4:], seq)
		nonce = c.nonce[:]
		out = append(out, nonce[4:]...)
	} else {
		nonce = c.xorNonce(seq)
	}
	return c.aead.Seal(out, nonce, payload, additionalData(&c.ad, seq, typ, len(payload))), nil
}

func (c *aeadCipher) open(dst []byte, seq uint64, typ uint8, fragment []byte) ([]byte, error) {
	n := c.openLen(len(fragment))
	if n < 0 {
		return nil, ErrBadRecordMAC
	}
	var nonce []byte
	if c.explicit {
		copy(c.nonce[4:], fragment[:explicitNonceLen])
		nonce = c.nonce[:]
	} else {
		nonce = c.xorNonce(seq)
	}
	ct := fragment[c.explicitLen():]
	if dst == nil {
		dst = ct
	}
	pt, err := c.aead.Open(dst[:0], nonce, ct, additionalData(&c.ad, seq, typ, n))
	if err != nil {
		return nil, ErrBadRecordMAC
	}
	return pt, nil
}

// cbcCipher is AES-CBC with HMAC, MAC-then-encrypt, an explicit random IV
// per record (RFC 5246 §6.2.3.2).
type cbcCipher struct {
	enc, dec cbcMode
	mac      hash.Hash
	macLen   int
	ad       [13]byte
	sum      [64]byte
}

// cbcMode is the SetIV method crypto/cipher's CBC modes have, which lets one
// mode value serve every record without allocating. Successive CryptBlocks
// calls continue one chain (cipher.BlockMode), which seal relies on.
type cbcMode interface {
	cipher.BlockMode
	SetIV([]byte)
}

const cbcBlock = 16

func newCBCCipher(block cipher.Block, mac hash.Hash) *cbcCipher {
	var zero [cbcBlock]byte
	return &cbcCipher{
		enc:    cipher.NewCBCEncrypter(block, zero[:]).(cbcMode),
		dec:    cipher.NewCBCDecrypter(block, zero[:]).(cbcMode),
		mac:    mac,
		macLen: mac.Size(),
	}
}

// overhead: IV, MAC, and at most one block of padding (we pad minimally).
func (c *cbcCipher) overhead() int { return cbcBlock + c.macLen + cbcBlock }

// openLen: everything after the IV is decrypted into dst.
func (c *cbcCipher) openLen(n int) int { return n - cbcBlock }

// seal MACs payload where it is, encrypts its whole blocks straight from it
// into out, and only copies the last partial block next to the MAC and
// padding to encrypt those: one pass over the payload for the MAC, one for
// the cipher, no copy.
func (c *cbcCipher) seal(out []byte, seq uint64, typ uint8, payload []byte, rand io.Reader) ([]byte, error) {
	out = slices.Grow(out, c.overhead()+len(payload))
	ivStart := len(out)
	out = out[:ivStart+cbcBlock]
	if _, err := io.ReadFull(rand, out[ivStart:]); err != nil {
		return nil, err
	}
	c.mac.Reset()
	c.mac.Write(additionalData(&c.ad, seq, typ, len(payload)))
	c.mac.Write(payload)
	sum := c.mac.Sum(c.sum[:0])

	start := len(out)
	whole := len(payload) &^ (cbcBlock - 1)
	c.enc.SetIV(out[ivStart:start])
	out = out[:start+whole]
	c.enc.CryptBlocks(out[start:], payload[:whole])
	tail := len(out)
	out = append(out, payload[whole:]...)
	out = append(out, sum...)
	// p+1 bytes of value p, the fewest that complete a block.
	p := cbcBlock - 1 - (len(out)-start)%cbcBlock
	for range p + 1 {
		out = append(out, byte(p))
	}
	c.enc.CryptBlocks(out[tail:], out[tail:])
	return out, nil
}

func (c *cbcCipher) open(dst []byte, seq uint64, typ uint8, fragment []byte) ([]byte, error) {
	// IV, then at least enough blocks for the MAC and the padding length.
	minBody := (c.macLen + 1 + cbcBlock - 1) / cbcBlock * cbcBlock
	if len(fragment) < cbcBlock+minBody || len(fragment)%cbcBlock != 0 {
		return nil, ErrBadRecordMAC
	}
	body := fragment[cbcBlock:]
	if dst != nil {
		body = dst[:len(body)]
	}
	c.dec.SetIV(fragment[:cbcBlock])
	c.dec.CryptBlocks(body, fragment[cbcBlock:])

	// From here on, padding and MAC are checked without branching on secret
	// data (Lucky13, AlFardan & Paterson 2013): the padding check reads the
	// same bytes whatever the padding says, a bad padding still gets a MAC
	// computed, and after the MAC the stripped bytes are hashed too, so the
	// number of hash blocks processed hardly depends on the padding length
	// (the approach of crypto/tls conn.go and tls10MAC).
	toRemove, good := cbcPadding(body)
	n := len(body) - c.macLen - toRemove
	n = subtle.ConstantTimeSelect(int(uint32(n)>>31), 0, n) // n = max(n, 0)
	c.mac.Reset()
	c.mac.Write(additionalData(&c.ad, seq, typ, n))
	c.mac.Write(body[:n])
	local := c.mac.Sum(c.sum[:0])
	c.mac.Write(body[n+c.macLen:])
	remote := body[n : n+c.macLen]
	if subtle.ConstantTimeCompare(local, remote)&good != 1 {
		return nil, ErrBadRecordMAC
	}
	return body[:n], nil
}

// cbcPadding reads the padding at the end of a decrypted CBC body (at least
// one byte long). It returns the number of bytes to strip (padding plus its
// length byte) and good = 1 when every padding byte equals the length byte
// and the padding fits, 0 otherwise. It touches the last min(256, len) bytes
// whatever the padding value.
func cbcPadding(body []byte) (toRemove, good int) {
	n := len(body)
	p := int(body[n-1])
	good = subtle.ConstantTimeLessOrEq(p+1, n)
	for i := range min(256, n) {
		inPad := subtle.ConstantTimeLessOrEq(i, p)
		eq := subtle.ConstantTimeByteEq(body[n-1-i], uint8(p))
		good &= subtle.ConstantTimeSelect(inPad, eq, 1)
	}
	return p + 1, good
}
