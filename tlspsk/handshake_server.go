package tlspsk

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
)

// serverHandshakeState holds one server handshake (crypto/tls
// handshake_server.go).
type serverHandshakeState struct {
	c           *Conn
	hello       *clientHelloMsg
	serverHello *serverHelloMsg
	suite       *cipherSuite
	transcript  []byte
	master      []byte
	ems         bool
}

func (hs *serverHandshakeState) handshake() error {
	if err := hs.readClientHello(); err != nil {
		return err
	}
	if err := hs.sendServerFlight(); err != nil {
		return err
	}
	if err := hs.readClientKeyExchange(); err != nil {
		return err
	}
	if err := hs.readClientFinished(); err != nil {
		return err
	}
	return hs.sendServerFinished()
}

// readClientHello checks the version (TLS 1.2 or later offered; SSL 3.0,
// TLS 1.0 and 1.1 refused), null compression, the renegotiation signal and
// picks the suite by the server's preference.
func (hs *serverHandshakeState) readClientHello() error {
	c := hs.c
	msg, raw, err := c.readHandshakeMsg(typeClientHello)
	if err != nil {
		return err
	}
	ch := msg.(*clientHelloMsg)
	hs.hello = ch
	hs.transcript = append(hs.transcript, raw...)
	if ch.vers < VersionTLS12 {
		return c.fail(AlertProtocolVersion, fmt.Errorf("tlspsk: client offered %s; only TLS 1.2 is supported", versionName(ch.vers)))
	}
	c.in.version = VersionTLS12
	c.out.Lock()
	c.out.version = VersionTLS12
	c.out.Unlock()
	if !slices.Contains(ch.compressionMethods, compressionNone) {
		return c.fail(AlertHandshakeFailure, errors.New("tlspsk: client does not offer null compression"))
	}
	if ch.secureRenegotiationSupported && len(ch.secureRenegotiation) != 0 {
		return c.fail(AlertHandshakeFailure, errors.New("tlspsk: non-empty renegotiation_info in the initial handshake"))
	}
	for _, id := range c.config.suites(false) {
		if suiteByID(id) != nil && slices.Contains(ch.cipherSuites, id) {
			hs.suite = suiteByID(id)
			break
		}
	}
	if hs.suite == nil {
		return c.fail(AlertHandshakeFailure, errors.New("tlspsk: no cipher suite in common with the client"))
	}
	hs.ems = ch.extendedMasterSecret && !c.config.DisableExtendedMasterSecret
	return nil
}

// sendServerFlight sends ServerHello, a ServerKeyExchange only when there is
// an identity hint, and ServerHelloDone, in one write. The session ID is
// empty: tlspsk does not resume sessions.
func (hs *serverHandshakeState) sendServerFlight() error {
	c := hs.c
	sh := &serverHelloMsg{
		vers:        VersionTLS12,
		random:      make([]byte, randomLen),
		cipherSuite: hs.suite.id,
	}
	sh.extendedMasterSecret = hs.ems
	if hs.hello.secureRenegotiationSupported || slices.Contains(hs.hello.cipherSuites, scsvRenegotiation) {
		sh.secureRenegotiationSupported = true
		c.state.SecureRenegotiation = true
	}
	if _, err := io.ReadFull(c.config.rand(), sh.random); err != nil {
		return fmt.Errorf("tlspsk: reading server random: %w", err)
	}
	hs.serverHello = sh
	msgs := [][]byte{sh.marshal()}
	if hint := c.config.IdentityHint; hint != "" {
		msgs = append(msgs, (&serverKeyExchangeMsg{identityHint: []byte(hint)}).marshal())
	}
	msgs = append(msgs, (&emptyMsg{typ: typeServerHelloDone}).marshal())
	flight := slices.Concat(msgs...)
	hs.transcript = append(hs.transcript, flight...)
	if err := c.writeHandshake(flight); err != nil {
		return err
	}
	return c.flush()
}

// readClientKeyExchange looks up the PSK for the client's identity and
// derives the keys.
func (hs *serverHandshakeState) readClientKeyExchange() error {
	c := hs.c
	msg, raw, err := c.readHandshakeMsg(typeClientKeyExchange)
	if err != nil {
		return err
	}
	hs.transcript = append(hs.transcript, raw...)
	identity := string(msg.(*clientKeyExchangeMsg).identity)
	psk := c.config.PSK
	if c.config.GetPSK != nil {
		if psk, err = c.config.GetPSK(identity); err != nil {
			return c.fail(AlertUnknownPSKIdentity, fmt.Errorf("tlspsk: no PSK for identity %q: %w", identity, err))
		}
	}
	if len(psk) == 0 || len(psk) > 0xffff {
		return c.fail(AlertInternalError, fmt.Errorf("tlspsk: PSK for identity %q has length %d", identity, len(psk)))
	}
	c.state.Identity = identity

	pms := pskPremaster(psk)
	if hs.ems {
		hs.master = extendedMasterSecret(hs.suite, pms, transcriptHash(hs.suite, hs.transcript))
	} else {
		hs.master = masterSecret(hs.suite, pms, hs.hello.random, hs.serverHello.random)
	}
	if err := writeKeyLog(c.config.KeyLogWriter, hs.hello.random, hs.master); err != nil {
		return fmt.Errorf("tlspsk: writing key log: %w", err)
	}
	clientCipher, serverCipher := hs.suite.newCiphers(keyBlock(hs.suite, hs.master, hs.hello.random, hs.serverHello.random))
	c.in.next = clientCipher
	c.out.Lock()
	c.out.next = serverCipher
	c.out.Unlock()
	return nil
}

func (hs *serverHandshakeState) readClientFinished() error {
	c := hs.c
	if err := c.readChangeCipherSpec(); err != nil {
		return err
	}
	want := finishedData(hs.suite, hs.master, labelClientFinished, hs.transcript)
	msg, raw, err := c.readHandshakeMsg(typeFinished)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(msg.(*finishedMsg).verifyData, want) != 1 {
		return c.fail(AlertDecryptError, ErrBadFinished)
	}
	hs.transcript = append(hs.transcript, raw...)
	return nil
}

func (hs *serverHandshakeState) sendServerFinished() error {
	c := hs.c
	if err := c.writeChangeCipherSpec(); err != nil {
		return err
	}
	fin := &finishedMsg{verifyData: finishedData(hs.suite, hs.master, labelServerFinished, hs.transcript)}
	if err := c.writeHandshake(fin.marshal()); err != nil {
		return err
	}
	if err := c.flush(); err != nil {
		return err
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	return nil
}

func versionName(v uint16) string {
	switch v {
	case versionSSL30:
		return "SSL 3.0"
	case versionTLS10:
		return "TLS 1.0"
	case versionTLS11:
		return "TLS 1.1"
	}
	return fmt.Sprintf("version 0x%04x", v)
}
