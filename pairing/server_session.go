package pairing

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/iosmux/iosmux/internal/tlv8"
)

// phase is where one device connection stands. The host drives; a
// startNewSession message restarts from phaseReady whatever the phase:
//
//	handshake --handshake--> ready
//	ready --V1--> verifyM3 --V3 ok--> session
//	                       --V3 bad--> ready        (V4 ERROR=2)
//	ready --S1--> [consent] --> setupM3 --M3 ok--> setupM5 --M5 ok--> session
//	                                    --bad--> ready       --bad--> ready
//	any --pairVerifyFailed--> ready
//	session --streamEncrypted--> session
type phase int

const (
	phaseHandshake phase = iota
	phaseReady
	phaseVerifyM3
	phaseSetupM3
	phaseSetupM5
	phaseSession
)

func (p phase) String() string {
	switch p {
	case phaseHandshake:
		return "awaiting handshake"
	case phaseReady:
		return "ready"
	case phaseVerifyM3:
		return "awaiting pair-verify M3"
	case phaseSetupM3:
		return "awaiting pair-setup M3"
	case phaseSetupM5:
		return "awaiting pair-setup M5"
	case phaseSession:
		return "session"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// deviceSession is the state of one device connection, owned by the
// goroutine running Serve.
type deviceSession struct {
	d      *Server
	t      Transport
	log    *slog.Logger
	seq    uint64
	phase  phase
	verify *verifyDevice
	setup  *setupDevice
	ch     *channel
	host   string // verified or newly paired host identifier
	// lastSeq is the sequence number of the message being answered, for
	// forRequestIdentifier.
	lastSeq uint64
}

func (s *deviceSession) run(ctx context.Context) error {
	for {
		env, err := s.t.ReadEnvelope(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the host closed the connection
			}
			return fmt.Errorf("pairing: device (%v): read: %w", s.phase, err)
		}
		m, err := parseMessage(env)
		if err != nil {
			return fmt.Errorf("pairing: device (%v): %w", s.phase, err)
		}
		s.lastSeq = m.seq
		if err := s.handle(ctx, m); err != nil {
			return fmt.Errorf("pairing: device (%v): %w", s.phase, err)
		}
	}
}

func (s *deviceSession) send(ctx context.Context, m *message) error {
	m.from, m.seq = originDevice, s.seq
	s.seq++
	return s.t.WriteEnvelope(ctx, m.tree())
}

func (s *deviceSession) sendData(ctx context.Context, kind string, data []byte) error {
	pd := &pairingData{data: data, kind: kind}
	return s.send(ctx, &message{kind: kindEvent, name: evPairingData, value: pd.value()})
}

func (s *deviceSession) sendEvent(ctx context.Context, name string, value tree) error {
	return s.send(ctx, &message{kind: kindEvent, name: name, value: value})
}

func (s *deviceSession) reset() {
	s.phase, s.verify, s.setup = phaseReady, nil, nil
}

func (s *deviceSession) handle(ctx context.Context, m *message) error {
	if s.phase == phaseHandshake && !(m.kind == kindRequest && m.name == reqHandshake) {
		return unexpected("%v before the handshake", m)
	}
	switch {
	case m.kind == kindRequest && m.name == reqHandshake:
		if err := parseHandshakeRequest(m); err != nil {
			return err
		}
		resp := &message{kind: kindResponse, name: reqHandshake, value: s.d.cfg.Handshake.value(),
			forRequest: m.seq, hasForRequest: true}
		s.reset()
		s.ch = nil
		return s.send(ctx, resp)
	case m.kind == kindEvent && m.name == evPairVerifyFailed:
		s.log.Debug("pairing: device: host reports pair-verify failed")
		if s.phase != phaseSession {
			s.reset()
		}
		return nil
	case m.kind == kindEvent && m.name == evPairingData:
		pd, err := parsePairingData(m.value)
		if err != nil {
			return err
		}
		return s.pairingData(ctx, pd)
	case m.kind == kindEncrypted:
		return s.encrypted(ctx, m.ciphertext)
	}
	// Real devices' reaction to unknown messages is UNCONFIRMED; closing
	// makes a confused host fail at once instead of waiting for a reply.
	return unexpected("%v", m)
}

func (s *deviceSession) pairingData(ctx context.Context, pd *pairingData) error {
	if pd.startNewSession {
		s.reset()
		s.ch = nil
		switch pd.kind {
		case kindVerifyManual:
			return s.verifyM1(ctx, pd.data)
		case kindSetupManual:
			return s.setupM1(ctx, pd.data, pd.sendingHost)
		}
		return unexpected("pairingData kind %q", pd.kind)
	}
	switch {
	case pd.kind == kindVerifyManual && s.phase == phaseVerifyM3:
		return s.verifyM3(ctx, pd.data)
	case pd.kind == kindSetupManual && s.phase == phaseSetupM3:
		return s.setupM3(ctx, pd.data)
	case pd.kind == kindSetupManual && s.phase == phaseSetupM5:
		return s.setupM5(ctx, pd.data)
	case pd.kind == kindVerifyManual || pd.kind == kindSetupManual:
		return s.outOfOrder(ctx, pd)
	}
	return unexpected("pairingData kind %q", pd.kind)
}

// outOfOrder answers a message that does not fit the phase with the next
// state number and ERROR=1, then resets (remotepairing.md §9.4; UNCONFIRMED for real
// devices).
func (s *deviceSession) outOfOrder(ctx context.Context, pd *pairingData) error {
	st := byte(1)
	if t, err := tlv8.Parse(pd.data); err == nil {
		if b, ok := t.Byte(tlv8.State); ok {
			st = b
		}
	}
	s.log.Debug("pairing: device: out-of-order message", "kind", pd.kind, "state", st, "phase", s.phase.String())
	s.reset()
	return s.sendData(ctx, pd.kind, errorTLV(st+1, CodeUnknown))
}

func (s *deviceSession) verifyM1(ctx context.Context, data []byte) error {
	hostEph, err := consumeVerifyM1(data)
	if err != nil {
		s.log.Debug("pairing: device: bad pair-verify M1", "err", err)
		return s.sendData(ctx, kindVerifyManual, errorTLV(stateM2, CodeUnknown))
	}
	v, err := newVerifyDevice(s.d.rand, hostEph)
	if err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrAuthentication) {
			return s.sendData(ctx, kindVerifyManual, errorTLV(stateM2, CodeAuthentication))
		}
		return err
	}
	s.verify, s.phase = v, phaseVerifyM3
	return s.sendData(ctx, kindVerifyManual, v.createM2(s.d.cfg.Identity.Identifier, s.d.ltsk))
}

func (s *deviceSession) verifyM3(ctx context.Context, data []byte) error {
	v := s.verify
	host, err := v.consumeM3(data, s.d.cfg.Hosts.LookupHost)
	if err != nil {
		// An unknown host, a bad signature and a garbled message all get
		// ERROR=2, as the references' devices answer (remotepairing.md §3.5, §9.3).
		s.log.Debug("pairing: device: pair-verify failed", "err", err)
		s.reset()
		return s.sendData(ctx, kindVerifyManual, createVerifyM4(CodeAuthentication))
	}
	s.host, s.ch, s.phase, s.verify = host, newChannel(v.shared), phaseSession, nil
	s.log.Debug("pairing: device: host verified", "host", host)
	if s.d.cfg.OnVerified != nil {
		s.d.cfg.OnVerified(host)
	}
	return s.sendData(ctx, kindVerifyManual, createVerifyM4(0))
}

func (s *deviceSession) setupM1(ctx context.Context, data []byte, hostName string) error {
	if err := consumeSetupM1(data); err != nil {
		s.log.Debug("pairing: device: bad pair-setup M1", "err", err)
		return s.sendData(ctx, kindSetupManual, errorTLV(stateM2, CodeUnknown))
	}
	cfg := &s.d.cfg
	password := trustPassword
	switch cfg.Mode {
	case ModeTrust:
		if err := s.sendEvent(ctx, evAwaitingConsent, tree{}); err != nil {
			return err
		}
		accept := true
		if cfg.Consent != nil {
			var err error
			if accept, err = cfg.Consent(ctx, hostName); err != nil {
				return fmt.Errorf("consent: %w", err)
			}
		}
		if !accept {
			desc := cfg.RejectDescription
			if desc == "" {
				desc = "The user declined to trust this computer."
			}
			s.reset()
			return s.sendEvent(ctx, evPairingRejected, rejectionValue(desc))
		}
	case ModePIN:
		password = cfg.PIN
		if password == "" {
			var err error
			if password, err = sixDigits(s.d.rand); err != nil {
				return err
			}
		}
		if cfg.ShowPIN != nil {
			cfg.ShowPIN(password)
		}
	}
	st, err := newSetupDevice(s.d.rand, password)
	if err != nil {
		return err
	}
	s.setup, s.phase = st, phaseSetupM3
	return s.sendData(ctx, kindSetupManual, st.createM2())
}

func (s *deviceSession) setupM3(ctx context.Context, data []byte) error {
	if err := s.setup.consumeM3(data); err != nil {
		// HomeKit accessories refuse after 100 failures (MaxTries); the
		// iOS threshold is UNCONFIRMED, so nothing is counted here.
		s.log.Debug("pairing: device: pair-setup M3 rejected", "err", err)
		s.reset()
		return s.sendData(ctx, kindSetupManual, errorTLV(stateM4, CodeAuthentication))
	}
	s.phase = phaseSetupM5
	return s.sendData(ctx, kindSetupManual, s.setup.createM4())
}

func (s *deviceSession) setupM5(ctx context.Context, data []byte) error {
	st := s.setup
	p, err := st.consumeM5(data)
	if err != nil {
		s.log.Debug("pairing: device: pair-setup M5 rejected", "err", err)
		s.reset()
		return s.sendData(ctx, kindSetupManual, errorTLV(stateM6, CodeAuthentication))
	}
	info, infoErr := hostInfoFrom(p.info)
	if infoErr != nil || info.AccountID != p.identifier {
		// Whether a device rejects these is UNCONFIRMED (remotepairing.md §9.4): log.
		s.log.Debug("pairing: device: host INFO does not match", "host", p.identifier, "err", infoErr)
	}
	ph := PairedHost{Identifier: p.identifier, PublicKey: p.ltpk, Info: info, InfoRaw: p.info}
	if err := s.d.cfg.Hosts.AddHost(ph); err != nil {
		return fmt.Errorf("store host: %w", err)
	}
	if s.d.cfg.OnPaired != nil {
		s.d.cfg.OnPaired(ph)
	}
	s.host, s.ch, s.phase, s.setup = p.identifier, newChannel(st.k), phaseSession, nil
	s.log.Debug("pairing: device: host paired", "host", p.identifier)
	return s.sendData(ctx, kindSetupManual, st.createM6(s.d.cfg.Identity.Identifier, s.d.ltsk, s.d.info))
}

// encrypted answers one request on the control channel. A message that does
// not open, or one before a session, closes the connection
// (remotepairing.md §9.3, §9.5).
func (s *deviceSession) encrypted(ctx context.Context, ct []byte) error {
	if s.phase != phaseSession || s.ch == nil {
		return fmt.Errorf("%w: encrypted message", ErrNotVerified)
	}
	pt, err := s.ch.openRequest(ct)
	if err != nil {
		return err
	}
	name, args, err := parseRequest(pt)
	if err != nil {
		return err
	}
	reply, err := s.answer(ctx, name, args)
	if err != nil {
		return err
	}
	return s.send(ctx, &message{kind: kindEncrypted, ciphertext: s.ch.sealResponse(reply)})
}

func (s *deviceSession) answer(ctx context.Context, name string, args any) ([]byte, error) {
	cfg := &s.d.cfg
	switch name {
	case reqCreateListener:
		req, err := parseListenerRequest(args)
		if err != nil {
			return errorJSON(err.Error())
		}
		if cfg.Mode == ModeLockdown || cfg.CreateListener == nil {
			return errorJSON(errListenerUnsupported)
		}
		l, err := cfg.CreateListener(ctx, s.host, *req)
		if err != nil {
			return errorJSON(err.Error())
		}
		res := tree{"port": int64(l.Port)}
		if l.DevicePublicKey != "" {
			res["devicePublicKey"] = l.DevicePublicKey
		}
		if l.ServiceName != "" {
			res["serviceName"] = l.ServiceName
		}
		return responseJSON(reqCreateListener, res)
	case reqRemoteUnlockKey:
		var key []byte
		var err error
		if cfg.UnlockKey != nil {
			key, err = cfg.UnlockKey(s.host)
		} else {
			key, err = readRand(s.d.rand, 48)
		}
		if err != nil {
			return errorJSON(err.Error())
		}
		return responseJSON(reqRemoteUnlockKey, tree{"hostKey": base64.StdEncoding.EncodeToString(key)})
	}
	s.log.Info("pairing: device: unknown encrypted request", "request", name)
	return errorJSON("Unsupported request: " + name)
}
