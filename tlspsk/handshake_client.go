package tlspsk

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"slices"
)

// clientHandshakeState holds one client handshake: the messages so far and
// the keys, each step a method in protocol order (crypto/tls
// handshake_client.go).
type clientHandshakeState struct {
	c           *Conn
	hello       *clientHelloMsg
	serverHello *serverHelloMsg
	suite       *cipherSuite
	transcript  []byte // every handshake message so far, as sent
	master      []byte
	ems         bool
}

func (hs *clientHandshakeState) handshake() error {
	if err := hs.sendClientHello(); err != nil {
		return err
	}
	if err := hs.readServerHello(); err != nil {
		return err
	}
	if err := hs.readServerHelloDone(); err != nil {
		return err
	}
	if err := hs.sendClientFlight(); err != nil {
		return err
	}
	return hs.readServerFinished()
}

// sendClientHello offers the configured suites that tlspsk implements, null
// compression only, and extensions only when Config.ExtendedMasterSecret
// asks for them (tlspsk.md §2: none by default).
func (hs *clientHandshakeState) sendClientHello() error {
	c := hs.c
	hs.hello = &clientHelloMsg{
		vers:               VersionTLS12,
		random:             make([]byte, randomLen),
		compressionMethods: []uint8{compressionNone},
	}
	for _, id := range c.config.suites(true) {
		if suiteByID(id) != nil && !slices.Contains(hs.hello.cipherSuites, id) {
			hs.hello.cipherSuites = append(hs.hello.cipherSuites, id)
		}
	}
	if c.config.ExtendedMasterSecret {
		hs.hello.extendedMasterSecret = true
		hs.hello.secureRenegotiationSupported = true
	}
	if _, err := io.ReadFull(c.config.rand(), hs.hello.random); err != nil {
		return fmt.Errorf("tlspsk: reading client random: %w", err)
	}
	raw := hs.hello.marshal()
	hs.transcript = append(hs.transcript, raw...)
	if err := c.writeHandshake(raw); err != nil {
		return err
	}
	return c.flush()
}

func (hs *clientHandshakeState) readServerHello() error {
	c := hs.c
	msg, raw, err := c.readHandshakeMsg(typeServerHello)
	if err != nil {
		return err
	}
	sh := msg.(*serverHelloMsg)
	hs.serverHello = sh
	hs.transcript = append(hs.transcript, raw...)
	if sh.vers != VersionTLS12 {
		if sh.vers>>8 == 3 {
			// Send the alert in the version the server picked, so it can
			// read it (OpenSSL drops a record of another version unread).
			c.out.Lock()
			c.out.version = sh.vers
			c.out.Unlock()
		}
		return c.fail(AlertProtocolVersion, fmt.Errorf("tlspsk: server chose version 0x%04x; only TLS 1.2 is supported", sh.vers))
	}
	c.in.version = VersionTLS12
	c.out.Lock()
	c.out.version = VersionTLS12
	c.out.Unlock()
	if sh.compressionMethod != compressionNone {
		return c.fail(AlertIllegalParameter, errors.New("tlspsk: server chose compression, which was not offered"))
	}
	if !slices.Contains(hs.hello.cipherSuites, sh.cipherSuite) {
		return c.fail(AlertIllegalParameter, fmt.Errorf("tlspsk: server chose suite %s, which was not offered", CipherSuiteName(sh.cipherSuite)))
	}
	hs.suite = suiteByID(sh.cipherSuite)
	for _, ext := range sh.types {
		offered := (ext == extExtendedMasterSecret && hs.hello.extendedMasterSecret) ||
			(ext == extRenegotiationInfo && hs.hello.secureRenegotiationSupported)
		if !offered {
			return c.fail(AlertUnsupportedExtension, fmt.Errorf("tlspsk: server sent extension %d, which was not offered", ext))
		}
	}
	if sh.secureRenegotiationSupported {
		// Initial handshake: renegotiated_connection must be empty (RFC 5746 §3.4).
		if len(sh.secureRenegotiation) != 0 {
			return c.fail(AlertHandshakeFailure, errors.New("tlspsk: non-empty renegotiation_info in the initial handshake"))
		}
		c.state.SecureRenegotiation = true
	}
	hs.ems = sh.extendedMasterSecret
	return nil
}

// readServerHelloDone takes an optional ServerKeyExchange (the identity
// hint; ignored beyond reporting it, tlspsk.md §2) and ServerHelloDone. A
// Certificate or CertificateRequest is unexpected: plain PSK has neither.
func (hs *clientHandshakeState) readServerHelloDone() error {
	c := hs.c
	msg, raw, err := c.readHandshakeMsg(typeServerKeyExchange, typeServerHelloDone)
	if err != nil {
		return err
	}
	hs.transcript = append(hs.transcript, raw...)
	if ske, ok := msg.(*serverKeyExchangeMsg); ok {
		c.state.IdentityHint = string(ske.identityHint)
		if _, raw, err = c.readHandshakeMsg(typeServerHelloDone); err != nil {
			return err
		}
		hs.transcript = append(hs.transcript, raw...)
	}
	return nil
}

// sendClientFlight sends ClientKeyExchange, ChangeCipherSpec and Finished in
// one write.
func (hs *clientHandshakeState) sendClientFlight() error {
	c := hs.c
	cke := &clientKeyExchangeMsg{identity: []byte(c.config.Identity)}
	raw := cke.marshal()
	hs.transcript = append(hs.transcript, raw...)
	if err := c.writeHandshake(raw); err != nil {
		return err
	}

	pms := pskPremaster(c.config.PSK)
	if hs.ems {
		hs.master = extendedMasterSecret(hs.suite, pms, transcriptHash(hs.suite, hs.transcript))
	} else {
		hs.master = masterSecret(hs.suite, pms, hs.hello.random, hs.serverHello.random)
	}
	if err := writeKeyLog(c.config.KeyLogWriter, hs.hello.random, hs.master); err != nil {
		return fmt.Errorf("tlspsk: writing key log: %w", err)
	}
	clientCipher, serverCipher := hs.suite.newCiphers(keyBlock(hs.suite, hs.master, hs.hello.random, hs.serverHello.random))
	c.in.next = serverCipher
	c.out.Lock()
	c.out.next = clientCipher
	c.out.Unlock()

	if err := c.writeChangeCipherSpec(); err != nil {
		return err
	}
	fin := &finishedMsg{verifyData: finishedData(hs.suite, hs.master, labelClientFinished, hs.transcript)}
	raw = fin.marshal()
	hs.transcript = append(hs.transcript, raw...)
	if err := c.writeHandshake(raw); err != nil {
		return err
	}
	return c.flush()
}

func (hs *clientHandshakeState) readServerFinished() error {
	c := hs.c
	if err := c.readChangeCipherSpec(); err != nil {
		return err
	}
	want := finishedData(hs.suite, hs.master, labelServerFinished, hs.transcript)
	msg, _, err := c.readHandshakeMsg(typeFinished)
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare(msg.(*finishedMsg).verifyData, want) != 1 {
		return c.fail(AlertDecryptError, ErrBadFinished)
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	c.state.Identity = c.config.Identity
	return nil
}
