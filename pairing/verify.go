package pairing

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/iosmux/iosmux/internal/tlv8"
)

// Pair-verify messages (remotepairing.md §3, device side §9.3).
// Each message has one create function on the side that sends it and one
// consume function on the side that receives it; they are pure apart from
// the random bytes they read, so the transcript tests drive them directly.
//
//	host                                   device
//	createM1  STATE=1 PUBLIC_KEY=hostEph   -> consumeVerifyM1
//	consumeM2 <- STATE=2 PUBLIC_KEY=devEph ENCRYPTED_DATA=E2  createM2
//	createM3  STATE=3 ENCRYPTED_DATA=E3    -> consumeM3
//	consumeVerifyM4 <- STATE=4 [ERROR]        createVerifyM4

const x25519Len = 32

// State byte values.
const (
	stateM1 byte = 1 + iota
	stateM2
	stateM3
	stateM4
	stateM5
	stateM6
)

// parseTLV decodes a message's TLV, turns an ERROR item into a
// *DeviceError and checks STATE when want is not zero.
func parseTLV(b []byte, want byte) (tlv8.Values, error) {
	v, err := tlv8.Parse(b)
	if err != nil {
		return nil, malformed("%v", err)
	}
	if code, ok := v.Get(tlv8.Error); ok {
		if len(code) != 1 {
			return nil, malformed("ERROR item of %d bytes", len(code))
		}
		return nil, &DeviceError{Code: Code(code[0])}
	}
	if want != 0 {
		st, ok := v.Byte(tlv8.State)
		if !ok {
			return nil, malformed("no STATE item")
		}
		if st != want {
			return nil, unexpected("STATE %d, want %d", st, want)
		}
	}
	return v, nil
}

// errorTLV is a failure reply: STATE then ERROR (remotepairing.md §3.4, §4.5).
func errorTLV(state byte, code Code) []byte {
	b := tlv8.AppendByte(nil, tlv8.State, state)
	return tlv8.AppendByte(b, tlv8.Error, byte(code))
}

func newX25519(rand io.Reader) (*ecdh.PrivateKey, error) {
	// Read the scalar ourselves: crypto/ecdh.GenerateKey ignores its reader
	// since Go 1.26, and tests need reproducible keys.
	var seed [x25519Len]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(seed[:])
}

func x25519Shared(priv *ecdh.PrivateKey, peer []byte) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, malformed("X25519 public key: %v", err)
	}
	s, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: X25519: %v", ErrAuthentication, err)
	}
	return s, nil
}

// signedBy concatenates what pair-verify signs: own ephemeral key, own
// identifier, peer's ephemeral key.
func signedBy(ownEph []byte, id string, peerEph []byte) []byte {
	m := make([]byte, 0, len(ownEph)+len(id)+len(peerEph))
	m = append(m, ownEph...)
	m = append(m, id...)
	return append(m, peerEph...)
}

// verifyHost is the host's pair-verify state.
type verifyHost struct {
	eph            *ecdh.PrivateKey
	hostEph        []byte
	devEph, shared []byte
	key            []byte
}

func newVerifyHost(rand io.Reader) (*verifyHost, error) {
	eph, err := newX25519(rand)
	if err != nil {
		return nil, err
	}
	return &verifyHost{eph: eph, hostEph: eph.PublicKey().Bytes()}, nil
}

func (v *verifyHost) createM1() []byte {
	b := tlv8.AppendByte(nil, tlv8.State, stateM1)
	return tlv8.Append(b, tlv8.PublicKey, v.hostEph)
}

// consumeM2 derives the shared secret and pvKey. E2 is not checked: no
// reference can (remotepairing.md §3.2) and the record keeps no device key.
func (v *verifyHost) consumeM2(b []byte) error {
	t, err := parseTLV(b, stateM2)
	if err != nil {
		return err
	}
	pk, _ := t.Get(tlv8.PublicKey)
	if len(pk) != x25519Len {
		return malformed("device PUBLIC_KEY of %d bytes, want %d", len(pk), x25519Len)
	}
	if v.shared, err = x25519Shared(v.eph, pk); err != nil {
		return err
	}
	v.devEph = append([]byte{}, pk...)
	v.key = derive(v.shared, labelVerify)
	return nil
}

func (v *verifyHost) createM3(id string, ltsk ed25519.PrivateKey) []byte {
	sig := ed25519.Sign(ltsk, signedBy(v.hostEph, id, v.devEph))
	inner := tlv8.Append(nil, tlv8.Identifier, []byte(id))
	inner = tlv8.Append(inner, tlv8.Signature, sig)
	b := tlv8.AppendByte(nil, tlv8.State, stateM3)
	return tlv8.Append(b, tlv8.EncryptedData, sealLabel(v.key, nonceVerifyM3, inner))
}

// consumeVerifyM4 accepts any reply without ERROR; STATE is normally 4.
func consumeVerifyM4(b []byte) error {
	t, err := parseTLV(b, 0)
	if err != nil {
		return err
	}
	if st, ok := t.Byte(tlv8.State); ok && st != stateM4 {
		return unexpected("STATE %d, want %d", st, stateM4)
	}
	return nil
}

// verifyDevice is the device's pair-verify state.
type verifyDevice struct {
	eph                     *ecdh.PrivateKey
	hostEph, devEph, shared []byte
	key                     []byte
}

// consumeVerifyM1 returns the host's ephemeral key.
func consumeVerifyM1(b []byte) ([]byte, error) {
	t, err := parseTLV(b, stateM1)
	if err != nil {
		return nil, err
	}
	pk, _ := t.Get(tlv8.PublicKey)
	if len(pk) != x25519Len {
		return nil, malformed("host PUBLIC_KEY of %d bytes, want %d", len(pk), x25519Len)
	}
	return pk, nil
}

func newVerifyDevice(rand io.Reader, hostEph []byte) (*verifyDevice, error) {
	eph, err := newX25519(rand)
	if err != nil {
		return nil, err
	}
	shared, err := x25519Shared(eph, hostEph)
	if err != nil {
		return nil, err
	}
	return &verifyDevice{
		eph: eph, hostEph: append([]byte{}, hostEph...), devEph: eph.PublicKey().Bytes(),
		shared: shared, key: derive(shared, labelVerify),
	}, nil
}

// createM2 signs devEph ‖ deviceID ‖ hostEph with the device key, the
// HomeKit layout the simulator uses (UNCONFIRMED for real devices,
// remotepairing.md §3.2).
func (v *verifyDevice) createM2(id string, ltsk ed25519.PrivateKey) []byte {
	sig := ed25519.Sign(ltsk, signedBy(v.devEph, id, v.hostEph))
	inner := tlv8.Append(nil, tlv8.Identifier, []byte(id))
	inner = tlv8.Append(inner, tlv8.Signature, sig)
	b := tlv8.AppendByte(nil, tlv8.State, stateM2)
	b = tlv8.Append(b, tlv8.PublicKey, v.devEph)
	return tlv8.Append(b, tlv8.EncryptedData, sealLabel(v.key, nonceVerifyM2, inner))
}

// consumeM3 opens E3 and checks the host's signature with the key lookup
// returns for its identifier. Every failure wraps ErrAuthentication or
// ErrMalformed; the device answers both with ERROR 2 (remotepairing.md §9.3).
func (v *verifyDevice) consumeM3(b []byte, lookup func(id string) (ed25519.PublicKey, bool)) (string, error) {
	t, err := parseTLV(b, stateM3)
	if err != nil {
		return "", err
	}
	enc, ok := t.Get(tlv8.EncryptedData)
	if !ok {
		return "", malformed("no ENCRYPTED_DATA")
	}
	inner, err := openLabel(v.key, nonceVerifyM3, enc)
	if err != nil {
		return "", fmt.Errorf("%w: E3 does not open", ErrAuthentication)
	}
	it, err := parseTLV(inner, 0)
	if err != nil {
		return "", err
	}
	id, _ := it.Get(tlv8.Identifier)
	sig, _ := it.Get(tlv8.Signature)
	if len(id) == 0 || len(sig) != ed25519.SignatureSize {
		return "", malformed("inner TLV without IDENTIFIER or a %d-byte SIGNATURE", ed25519.SignatureSize)
	}
	pub, ok := lookup(string(id))
	if !ok || len(pub) != ed25519.PublicKeySize {
		return "", fmt.Errorf("%w: unknown host %q", ErrAuthentication, id)
	}
	if !ed25519.Verify(pub, signedBy(v.hostEph, string(id), v.devEph), sig) {
		return "", fmt.Errorf("%w: bad signature from host %q", ErrAuthentication, id)
	}
	return string(id), nil
}

// createVerifyM4 is success (STATE=4) or, with a code, a failure.
func createVerifyM4(code Code) []byte {
	if code != 0 {
		return errorTLV(stateM4, code)
	}
	return tlv8.AppendByte(nil, tlv8.State, stateM4)
}
