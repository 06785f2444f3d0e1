// Package srp implements SRP-6a as RemotePairing pair-setup uses it
// (remotepairing.md §4.3): the RFC 5054 3072-bit group, g = 5,
// SHA-512, with the byte conventions the references agree on:
//
//	k  = H(PAD(N) ‖ PAD(g))
//	x  = H(s ‖ H(I ‖ ":" ‖ P))
//	u  = H(PAD(A) ‖ PAD(B))
//	K  = H(MIN(S))
//	M1 = H((H(N) XOR H(g)) ‖ H(I) ‖ s ‖ MIN(A) ‖ MIN(B) ‖ K)
//	M2 = H(MIN(A) ‖ M1 ‖ K)
//
// PAD is big-endian left-padded to 384 bytes, MIN big-endian without leading
// zeros. The conventions differ between implementations only when A, B or S
// has a zero top byte (remotepairing.md §4.3, §11); a Client reports that
// case through Ambiguous so the caller can draw a new private value, and a
// Server, which cannot choose the client's values, tries the other
// conventions before rejecting a proof.
//
// Both roles are here: Client (the host) and Server (the device). The package
// is pure: callers supply the private values, nothing is read from a random
// source, and nothing is logged.
package srp

import (
	"crypto/sha512"
	"errors"
	"math/big"
)

// Size is the byte length of N and of padded group elements.
const Size = 384

// nHex is the RFC 5054 3072-bit prime.
const nHex = "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74" +
	"020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437" +
	"4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED" +
	"EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05" +
	"98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB" +
	"9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B" +
	"E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718" +
	"3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33" +
	"A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7" +
	"ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864" +
	"D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2" +
	"08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF"

var (
	groupN, _ = new(big.Int).SetString(nHex, 16)
	groupG    = big.NewInt(5)
	// multK is k = H(PAD(N) ‖ PAD(g)).
	multK = new(big.Int).SetBytes(hash(pad(groupN), pad(groupG)))
	// hNg is H(PAD(N)) XOR H(MIN(g)); N is already Size bytes.
	hNg = func() []byte {
		hn, hg := hash(pad(groupN)), hash(groupG.Bytes())
		out := make([]byte, len(hn))
		for i := range out {
			out[i] = hn[i] ^ hg[i]
		}
		return out
	}()
)

// Errors.
var (
	ErrBadPublic = errors.New("srp: peer public value is zero mod N")
	ErrBadSize   = errors.New("srp: value longer than the group")
	ErrBadProof  = errors.New("srp: proof does not verify")
)

func hash(parts ...[]byte) []byte {
	h := sha512.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// pad returns x big-endian, left-padded to Size bytes.
func pad(x *big.Int) []byte {
	return x.FillBytes(make([]byte, Size))
}

// N returns a copy of the group prime, padded to Size bytes.
func N() []byte { return pad(groupN) }

// HNXorHg returns H(N) XOR H(g), the first M1 input.
func HNXorHg() []byte { return append([]byte{}, hNg...) }

// Multiplier returns k = H(PAD(N) ‖ PAD(g)).
func Multiplier() []byte { return multK.FillBytes(make([]byte, sha512.Size)) }

// privateX computes x = H(s ‖ H(I ‖ ":" ‖ P)).
func privateX(username, password, salt []byte) *big.Int {
	inner := hash(username, []byte(":"), password)
	return new(big.Int).SetBytes(hash(salt, inner))
}

// Verifier returns v = g^x mod N, padded to Size bytes.
func Verifier(username, password, salt []byte) []byte {
	return pad(new(big.Int).Exp(groupG, privateX(username, password, salt), groupN))
}

// scramble computes u = H(PAD(A) ‖ PAD(B)).
func scramble(A, B *big.Int) *big.Int {
	return new(big.Int).SetBytes(hash(pad(A), pad(B)))
}

// convention selects the byte forms that only matter for leading zeros.
type convention struct {
	padS  bool // K = H(PAD(S)) (appium) instead of H(MIN(S))
	padAB bool // M1 over PAD(A), PAD(B) and M2 over PAD(A) (HomeKitADK)
}

func sessionKey(S *big.Int, c convention) []byte {
	if c.padS {
		return hash(pad(S))
	}
	return hash(S.Bytes())
}

func form(x *big.Int, padded bool) []byte {
	if padded {
		return pad(x)
	}
	return x.Bytes()
}

func clientProof(username, salt []byte, A, B *big.Int, K []byte, c convention) []byte {
	return hash(hNg, hash(username), salt, form(A, c.padAB), form(B, c.padAB), K)
}

func serverProof(A *big.Int, m1, K []byte, c convention) []byte {
	return hash(form(A, c.padAB), m1, K)
}

// element parses a peer's public value: at most Size bytes, big-endian,
// non-zero mod N.
func element(b []byte) (*big.Int, error) {
	if len(b) > Size {
		return nil, ErrBadSize
	}
	x := new(big.Int).SetBytes(b)
	if new(big.Int).Mod(x, groupN).Sign() == 0 {
		return nil, ErrBadPublic
	}
	return x, nil
}

// topZero reports whether x, padded to Size bytes, starts with a zero byte.
func topZero(x *big.Int) bool { return x.BitLen() <= (Size-1)*8 }
