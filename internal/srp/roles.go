package srp

import (
	"crypto/subtle"
	"math/big"
)

// Client is the host side of one SRP exchange, created once M2 (salt and B)
// has arrived.
type Client struct {
	pubA, secret *big.Int
	k, m1, m2    []byte
}

// NewClient computes A = g^a, S, K, M1 and the expected M2 from the private
// value a (the references use 32 random bytes), the user name ("Pair-Setup"),
// the password and the device's salt and B.
func NewClient(username, password, salt, B, a []byte) (*Client, error) {
	b, err := element(B)
	if err != nil {
		return nil, err
	}
	aInt := new(big.Int).SetBytes(a)
	A := new(big.Int).Exp(groupG, aInt, groupN)
	x := privateX(username, password, salt)
	u := scramble(A, b)

	// S = (B − k·g^x)^(a + u·x) mod N
	base := new(big.Int).Exp(groupG, x, groupN)
	base.Mul(base, multK)
	base.Sub(b, base)
	base.Mod(base, groupN)
	exp := new(big.Int).Mul(u, x)
	exp.Add(exp, aInt)
	S := new(big.Int).Exp(base, exp, groupN)

	var c convention
	K := sessionKey(S, c)
	m1 := clientProof(username, salt, A, b, K, c)
	return &Client{pubA: A, secret: S, k: K, m1: m1, m2: serverProof(A, m1, K, c)}, nil
}

// PublicA returns A padded to Size bytes, as sent in M3.
func (c *Client) PublicA() []byte { return pad(c.pubA) }

// Proof returns M1.
func (c *Client) Proof() []byte { return append([]byte{}, c.m1...) }

// SessionKey returns K (64 bytes).
func (c *Client) SessionKey() []byte { return append([]byte{}, c.k...) }

// Ambiguous reports whether A or S has a zero top byte, the only case in
// which implementations disagree on K, M1 or M2. The host then draws a new a
// (remotepairing.md §4.3, host rule).
func (c *Client) Ambiguous() bool { return topZero(c.pubA) || topZero(c.secret) }

// VerifyServerProof reports, in constant time, whether m2 is the device's
// correct M2.
func (c *Client) VerifyServerProof(m2 []byte) bool {
	return subtle.ConstantTimeCompare(m2, c.m2) == 1
}

// Server is the device side of one SRP exchange.
type Server struct {
	username, salt []byte
	v, b, B        *big.Int
}

// NewServer computes v from the password and B = k·v + g^b from the private
// value b. The device redraws b while B has a zero top byte
// (remotepairing.md §9.4); see Ambiguous.
func NewServer(username, password, salt, b []byte) *Server {
	v := new(big.Int).SetBytes(Verifier(username, password, salt))
	bInt := new(big.Int).SetBytes(b)
	B := new(big.Int).Exp(groupG, bInt, groupN)
	kv := new(big.Int).Mul(multK, v)
	B.Add(B, kv)
	B.Mod(B, groupN)
	return &Server{
		username: append([]byte{}, username...),
		salt:     append([]byte{}, salt...),
		v:        v, b: bInt, B: B,
	}
}

// PublicB returns B padded to Size bytes, as sent in M2.
func (s *Server) PublicB() []byte { return pad(s.B) }

// Ambiguous reports whether B has a zero top byte.
func (s *Server) Ambiguous() bool { return topZero(s.B) }

// Verify checks the host's A and M1. On success it returns M2 and the session
// key K. It first uses the conventions of the package comment; when A, B or S
// has a zero top byte it also accepts the padded forms (appium's K over
// PAD(S), HomeKitADK's M1 over PAD(A), PAD(B)), and answers M2 in the form the
// host used, since that host will check M2 the same way.
func (s *Server) Verify(A, m1 []byte) (m2, K []byte, err error) {
	a, err := element(A)
	if err != nil {
		return nil, nil, err
	}
	u := scramble(a, s.B)
	// S = (A · v^u)^b mod N
	S := new(big.Int).Exp(s.v, u, groupN)
	S.Mul(S, a)
	S.Mod(S, groupN)
	S.Exp(S, s.b, groupN)

	conventions := []convention{{}}
	if topZero(S) {
		conventions = append(conventions, convention{padS: true})
	}
	if topZero(a) || topZero(s.B) {
		for _, c := range conventions {
			conventions = append(conventions, convention{padS: c.padS, padAB: true})
		}
	}
	for _, c := range conventions {
		K := sessionKey(S, c)
		want := clientProof(s.username, s.salt, a, s.B, K, c)
		if subtle.ConstantTimeCompare(m1, want) == 1 {
			return serverProof(a, want, K, c), K, nil
		}
	}
	return nil, nil, ErrBadProof
}
