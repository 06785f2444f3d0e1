package pairing

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/internal/srp"
	"github.com/iosmux/iosmux/internal/tlv8"
)

// Pair-setup messages (remotepairing.md §4, device side §9.4),
// one create and one consume function per message:
//
//	host                                          device
//	createSetupM1  METHOD=0 STATE=1           ->  consumeSetupM1
//	                                              (consent, PIN)
//	consumeSetupM2 <- STATE=2 SALT PUBLIC_KEY=B   createM2
//	createM3       STATE=3 PUBLIC_KEY=A PROOF ->  consumeM3
//	consumeM4      <- STATE=4 PROOF=M2            createM4
//	createM5       ENCRYPTED_DATA STATE=5     ->  consumeM5
//	consumeM6      <- ENCRYPTED_DATA STATE=6      createM6

const (
	srpUser = "Pair-Setup"
	// trustPassword is the SRP password of the Trust-dialog and lockdown
	// flows (remotepairing.md §4.2).
	trustPassword = "000000"
	saltLen       = 16
	srpPrivLen    = 32
	// maxDraws bounds the redraws of a and b; each draw is unambiguous with
	// probability about 254/256.
	maxDraws = 64
)

func readRand(rand io.Reader, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(rand, b); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return b, nil
}

func createSetupM1() []byte {
	b := tlv8.AppendByte(nil, tlv8.Method, 0)
	return tlv8.AppendByte(b, tlv8.State, stateM1)
}

func consumeSetupM1(b []byte) error {
	t, err := parseTLV(b, stateM1)
	if err != nil {
		return err
	}
	if m, ok := t.Byte(tlv8.Method); !ok || m != 0 {
		return malformed("METHOD %x, want 00", m)
	}
	return nil
}

// consumeSetupM2 returns the salt and B.
func consumeSetupM2(b []byte) (salt, pubB []byte, err error) {
	t, err := parseTLV(b, stateM2)
	if err != nil {
		return nil, nil, err
	}
	salt, _ = t.Get(tlv8.Salt)
	pubB, _ = t.Get(tlv8.PublicKey)
	if len(salt) == 0 || len(pubB) == 0 || len(pubB) > srp.Size {
		return nil, nil, malformed("SALT of %d bytes, PUBLIC_KEY of %d bytes", len(salt), len(pubB))
	}
	return salt, pubB, nil
}

// setupHost is the host's pair-setup state after M2.
type setupHost struct {
	client *srp.Client
	k, key []byte
}

// newSetupHost draws a until neither A nor S has a zero top byte, so every
// SRP convention yields the same K, M1 and M2 (remotepairing.md §4.3, host rule).
func newSetupHost(rand io.Reader, password string, salt, pubB []byte) (*setupHost, error) {
	for range maxDraws {
		a, err := readRand(rand, srpPrivLen)
		if err != nil {
			return nil, err
		}
		c, err := srp.NewClient([]byte(srpUser), []byte(password), salt, pubB, a)
		if err != nil {
			return nil, malformed("device B: %v", err)
		}
		if !c.Ambiguous() {
			k := c.SessionKey()
			return &setupHost{client: c, k: k, key: derive(k, labelSetup)}, nil
		}
	}
	return nil, errors.New("no unambiguous SRP value after many draws; random source broken")
}

func (s *setupHost) createM3() []byte {
	b := tlv8.AppendByte(nil, tlv8.State, stateM3)
	b = tlv8.Append(b, tlv8.PublicKey, s.client.PublicA())
	return tlv8.Append(b, tlv8.Proof, s.client.Proof())
}

func (s *setupHost) consumeM4(b []byte) error {
	t, err := parseTLV(b, stateM4)
	if err != nil {
		return err
	}
	proof, _ := t.Get(tlv8.Proof)
	if !s.client.VerifyServerProof(proof) {
		return fmt.Errorf("%w: device SRP proof does not match", ErrAuthentication)
	}
	return nil
}

// identityTLV is the inner TLV of M5 and M6: IDENTIFIER, PUBLIC_KEY,
// SIGNATURE over x ‖ identifier ‖ LTPK, INFO.
func identityTLV(x []byte, id string, ltsk ed25519.PrivateKey, info []byte) []byte {
	ltpk := ltsk.Public().(ed25519.PublicKey)
	signed := append(append(append([]byte{}, x...), id...), ltpk...)
	inner := tlv8.Append(nil, tlv8.Identifier, []byte(id))
	inner = tlv8.Append(inner, tlv8.PublicKey, ltpk)
	inner = tlv8.Append(inner, tlv8.Signature, ed25519.Sign(ltsk, signed))
	return tlv8.Append(inner, tlv8.Info, info)
}

// peerIdentity is what M5 or M6 carries.
type peerIdentity struct {
	identifier string
	ltpk       ed25519.PublicKey
	info       []byte
	// signatureOK reports whether SIGNATURE verified over x ‖ id ‖ LTPK.
	signatureOK bool
}

func parseIdentity(inner, x []byte) (*peerIdentity, error) {
	t, err := parseTLV(inner, 0)
	if err != nil {
		return nil, err
	}
	id, _ := t.Get(tlv8.Identifier)
	pk, _ := t.Get(tlv8.PublicKey)
	sig, _ := t.Get(tlv8.Signature)
	info, _ := t.Get(tlv8.Info)
	if len(id) == 0 || len(pk) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return nil, malformed("identity TLV: IDENTIFIER %d, PUBLIC_KEY %d, SIGNATURE %d bytes", len(id), len(pk), len(sig))
	}
	signed := append(append(append([]byte{}, x...), id...), pk...)
	return &peerIdentity{
		identifier:  string(id),
		ltpk:        ed25519.PublicKey(append([]byte{}, pk...)),
		info:        append([]byte{}, info...),
		signatureOK: ed25519.Verify(pk, signed, sig),
	}, nil
}

// createM5 sends the host identity; ENCRYPTED_DATA precedes STATE as in
// pymobiledevice3 (pair_setup.json m5_tlv).
func (s *setupHost) createM5(id string, ltsk ed25519.PrivateKey, info []byte) []byte {
	inner := identityTLV(derive(s.k, labelControllerSign), id, ltsk, info)
	b := tlv8.Append(nil, tlv8.EncryptedData, sealLabel(s.key, nonceSetupM5, inner))
	return tlv8.AppendByte(b, tlv8.State, stateM5)
}

// consumeM6 opens the device identity. A bad signature is reported in the
// result, not as an error: no reference verifies it (remotepairing.md §4.8).
func (s *setupHost) consumeM6(b []byte) (*peerIdentity, error) {
	t, err := parseTLV(b, stateM6)
	if err != nil {
		return nil, err
	}
	enc, ok := t.Get(tlv8.EncryptedData)
	if !ok {
		return nil, malformed("no ENCRYPTED_DATA")
	}
	inner, err := openLabel(s.key, nonceSetupM6, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: E6 does not open", ErrAuthentication)
	}
	return parseIdentity(inner, derive(s.k, labelAccessorySign))
}

// setupDevice is the device's pair-setup state.
type setupDevice struct {
	server *srp.Server
	salt   []byte
	m2     []byte // SRP M2, once M3 verified
	k, key []byte
}

// newSetupDevice draws the salt and then b until B has a non-zero top byte
// (remotepairing.md §9.4).
func newSetupDevice(rand io.Reader, password string) (*setupDevice, error) {
	salt, err := readRand(rand, saltLen)
	if err != nil {
		return nil, err
	}
	for range maxDraws {
		b, err := readRand(rand, srpPrivLen)
		if err != nil {
			return nil, err
		}
		srv := srp.NewServer([]byte(srpUser), []byte(password), salt, b)
		if !srv.Ambiguous() {
			return &setupDevice{server: srv, salt: salt}, nil
		}
	}
	return nil, errors.New("no unambiguous SRP value after many draws; random source broken")
}

func (s *setupDevice) createM2() []byte {
	b := tlv8.AppendByte(nil, tlv8.State, stateM2)
	b = tlv8.Append(b, tlv8.Salt, s.salt)
	return tlv8.Append(b, tlv8.PublicKey, s.server.PublicB())
}

// consumeM3 checks the host's proof; a wrong PIN is ErrAuthentication.
func (s *setupDevice) consumeM3(b []byte) error {
	t, err := parseTLV(b, stateM3)
	if err != nil {
		return err
	}
	pubA, _ := t.Get(tlv8.PublicKey)
	proof, _ := t.Get(tlv8.Proof)
	if len(pubA) == 0 || len(proof) == 0 {
		return malformed("PUBLIC_KEY of %d bytes, PROOF of %d bytes", len(pubA), len(proof))
	}
	m2, k, err := s.server.Verify(pubA, proof)
	switch {
	case errors.Is(err, srp.ErrBadProof):
		return fmt.Errorf("%w: host SRP proof does not verify (wrong PIN?)", ErrAuthentication)
	case err != nil:
		return malformed("host A: %v", err)
	}
	s.m2, s.k, s.key = m2, k, derive(k, labelSetup)
	return nil
}

func (s *setupDevice) createM4() []byte {
	b := tlv8.AppendByte(nil, tlv8.State, stateM4)
	return tlv8.Append(b, tlv8.Proof, s.m2)
}

// consumeM5 opens the host identity; unlike M6 a bad signature fails.
func (s *setupDevice) consumeM5(b []byte) (*peerIdentity, error) {
	t, err := parseTLV(b, stateM5)
	if err != nil {
		return nil, err
	}
	enc, ok := t.Get(tlv8.EncryptedData)
	if !ok {
		return nil, malformed("no ENCRYPTED_DATA")
	}
	inner, err := openLabel(s.key, nonceSetupM5, enc)
	if err != nil {
		return nil, fmt.Errorf("%w: E5 does not open", ErrAuthentication)
	}
	p, err := parseIdentity(inner, derive(s.k, labelControllerSign))
	if err != nil {
		return nil, err
	}
	if !p.signatureOK {
		return nil, fmt.Errorf("%w: bad signature from host %q", ErrAuthentication, p.identifier)
	}
	return p, nil
}

func (s *setupDevice) createM6(id string, ltsk ed25519.PrivateKey, info []byte) []byte {
	inner := identityTLV(derive(s.k, labelAccessorySign), id, ltsk, info)
	b := tlv8.Append(nil, tlv8.EncryptedData, sealLabel(s.key, nonceSetupM6, inner))
	return tlv8.AppendByte(b, tlv8.State, stateM6)
}
