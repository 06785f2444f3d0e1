package tlspsk

import (
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// Handshake message types (RFC 5246 §7.4).
const (
	typeHelloRequest       uint8 = 0
	typeClientHello        uint8 = 1
	typeServerHello        uint8 = 2
	typeNewSessionTicket   uint8 = 4
	typeCertificate        uint8 = 11
	typeServerKeyExchange  uint8 = 12
	typeCertificateRequest uint8 = 13
	typeServerHelloDone    uint8 = 14
	typeCertificateVerify  uint8 = 15
	typeClientKeyExchange  uint8 = 16
	typeFinished           uint8 = 20
)

// Extensions tlspsk understands; every other one a client offers is ignored.
const (
	extExtendedMasterSecret uint16 = 23     // RFC 7627
	extRenegotiationInfo    uint16 = 0xff01 // RFC 5746
)

const (
	compressionNone uint8 = 0
)

const (
	randomLen    = 32
	maxSessionID = 32
)

// handshakeMessage is one typed message. marshal returns the whole message,
// header included; unmarshal parses one and reports whether it was well
// formed (lengths consistent, no trailing bytes, fields within their
// ranges). Parsed byte slices alias the input.
type handshakeMessage interface {
	marshal() []byte
	unmarshal([]byte) bool
}

// addMessage writes the 4-byte handshake header around body.
func addMessage(typ uint8, body func(*cryptobyte.Builder)) []byte {
	var b cryptobyte.Builder
	b.AddUint8(typ)
	b.AddUint24LengthPrefixed(body)
	return b.BytesOrPanic() // lengths come from our own values, bounded by construction
}

// readMessage checks the header and returns the body.
func readMessage(data []byte, typ uint8) (cryptobyte.String, bool) {
	s := cryptobyte.String(data)
	var t uint8
	var body cryptobyte.String
	if !s.ReadUint8(&t) || t != typ || !s.ReadUint24LengthPrefixed(&body) || !s.Empty() {
		return nil, false
	}
	return body, true
}

func readUint8Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = v
	return true
}

func readUint16Bytes(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = v
	return true
}

// helloExtensions are the extension fields both hellos share.
type helloExtensions struct {
	// present records whether the extensions block existed at all, so an
	// empty block re-encodes as one.
	present              bool
	extendedMasterSecret bool
	// secureRenegotiationSupported: the renegotiation_info extension was
	// there; secureRenegotiation is its renegotiated_connection field.
	secureRenegotiationSupported bool
	secureRenegotiation          []byte
	// types lists every extension in order, known or not, so the client can
	// refuse ones it did not offer.
	types []uint16
}

func (e *helloExtensions) add(b *cryptobyte.Builder) {
	if !e.present && !e.extendedMasterSecret && !e.secureRenegotiationSupported {
		return
	}
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		if e.secureRenegotiationSupported {
			b.AddUint16(extRenegotiationInfo)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.secureRenegotiation) })
			})
		}
		if e.extendedMasterSecret {
			b.AddUint16(extExtendedMasterSecret)
			b.AddUint16(0)
		}
	})
}

// read parses an optional extensions block that must end the message.
// Duplicates are a decode error (RFC 5246 §7.4.1.4).
func (e *helloExtensions) read(s *cryptobyte.String) bool {
	if s.Empty() {
		return true
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return false
	}
	e.present = true
	for !exts.Empty() {
		var typ uint16
		var ext cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&ext) {
			return false
		}
		if slices.Contains(e.types, typ) {
			return false
		}
		e.types = append(e.types, typ)
		switch typ {
		case extExtendedMasterSecret:
			if !ext.Empty() {
				return false
			}
			e.extendedMasterSecret = true
		case extRenegotiationInfo:
			if !readUint8Bytes(&ext, &e.secureRenegotiation) || !ext.Empty() {
				return false
			}
			e.secureRenegotiationSupported = true
		}
	}
	return true
}

// clientHelloMsg is RFC 5246 §7.4.1.2.
type clientHelloMsg struct {
	vers               uint16
	random             []byte
	sessionID          []byte
	cipherSuites       []uint16
	compressionMethods []uint8
	helloExtensions
}

func (m *clientHelloMsg) marshal() []byte {
	return addMessage(typeClientHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, s := range m.cipherSuites {
				b.AddUint16(s)
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.compressionMethods) })
		m.helloExtensions.add(b)
	})
}

func (m *clientHelloMsg) unmarshal(data []byte) bool {
	*m = clientHelloMsg{}
	s, ok := readMessage(data, typeClientHello)
	if !ok || !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, randomLen) ||
		!readUint8Bytes(&s, &m.sessionID) || len(m.sessionID) > maxSessionID {
		return false
	}
	var suites cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&suites) || len(suites) == 0 || len(suites)%2 != 0 {
		return false
	}
	m.cipherSuites = make([]uint16, 0, len(suites)/2)
	for !suites.Empty() {
		var id uint16
		suites.ReadUint16(&id)
		m.cipherSuites = append(m.cipherSuites, id)
	}
	if !readUint8Bytes(&s, &m.compressionMethods) || len(m.compressionMethods) == 0 {
		return false
	}
	return m.helloExtensions.read(&s)
}

// serverHelloMsg is RFC 5246 §7.4.1.3.
type serverHelloMsg struct {
	vers              uint16
	random            []byte
	sessionID         []byte
	cipherSuite       uint16
	compressionMethod uint8
	helloExtensions
}

func (m *serverHelloMsg) marshal() []byte {
	return addMessage(typeServerHello, func(b *cryptobyte.Builder) {
		b.AddUint16(m.vers)
		b.AddBytes(m.random)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
		b.AddUint16(m.cipherSuite)
		b.AddUint8(m.compressionMethod)
		m.helloExtensions.add(b)
	})
}

func (m *serverHelloMsg) unmarshal(data []byte) bool {
	*m = serverHelloMsg{}
	s, ok := readMessage(data, typeServerHello)
	if !ok || !s.ReadUint16(&m.vers) || !s.ReadBytes(&m.random, randomLen) ||
		!readUint8Bytes(&s, &m.sessionID) || len(m.sessionID) > maxSessionID ||
		!s.ReadUint16(&m.cipherSuite) || !s.ReadUint8(&m.compressionMethod) {
		return false
	}
	return m.helloExtensions.read(&s)
}

// serverKeyExchangeMsg is the plain-PSK ServerKeyExchange: only the
// identity hint (RFC 4279 §2).
type serverKeyExchangeMsg struct {
	identityHint []byte
}

func (m *serverKeyExchangeMsg) marshal() []byte {
	return addMessage(typeServerKeyExchange, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.identityHint) })
	})
}

func (m *serverKeyExchangeMsg) unmarshal(data []byte) bool {
	*m = serverKeyExchangeMsg{}
	s, ok := readMessage(data, typeServerKeyExchange)
	return ok && readUint16Bytes(&s, &m.identityHint) && s.Empty()
}

// clientKeyExchangeMsg is the plain-PSK ClientKeyExchange: only the
// identity (RFC 4279 §2; empty for the iPhone tunnel, tlspsk.md §2).
type clientKeyExchangeMsg struct {
	identity []byte
}

func (m *clientKeyExchangeMsg) marshal() []byte {
	return addMessage(typeClientKeyExchange, func(b *cryptobyte.Builder) {
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.identity) })
	})
}

func (m *clientKeyExchangeMsg) unmarshal(data []byte) bool {
	*m = clientKeyExchangeMsg{}
	s, ok := readMessage(data, typeClientKeyExchange)
	return ok && readUint16Bytes(&s, &m.identity) && s.Empty()
}

// finishedMsg is RFC 5246 §7.4.9; every tlspsk suite uses 12-byte
// verify_data.
type finishedMsg struct {
	verifyData []byte
}

func (m *finishedMsg) marshal() []byte {
	return addMessage(typeFinished, func(b *cryptobyte.Builder) { b.AddBytes(m.verifyData) })
}

func (m *finishedMsg) unmarshal(data []byte) bool {
	*m = finishedMsg{}
	s, ok := readMessage(data, typeFinished)
	return ok && s.ReadBytes(&m.verifyData, finishedLen) && s.Empty()
}

// emptyMsg is a message without a body: ServerHelloDone and HelloRequest.
type emptyMsg struct{ typ uint8 }

func (m *emptyMsg) marshal() []byte {
	return addMessage(m.typ, func(*cryptobyte.Builder) {})
}

func (m *emptyMsg) unmarshal(data []byte) bool {
	s, ok := readMessage(data, m.typ)
	return ok && s.Empty()
}

// newMessage returns an empty message of a type tlspsk parses, or nil.
func newMessage(typ uint8) handshakeMessage {
	switch typ {
	case typeClientHello:
		return new(clientHelloMsg)
	case typeServerHello:
		return new(serverHelloMsg)
	case typeServerKeyExchange:
		return new(serverKeyExchangeMsg)
	case typeClientKeyExchange:
		return new(clientKeyExchangeMsg)
	case typeFinished:
		return new(finishedMsg)
	case typeServerHelloDone, typeHelloRequest:
		return &emptyMsg{typ: typ}
	}
	return nil
}
