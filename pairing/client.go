package pairing

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
)

// ClientConfig configures the host role. The zero value is not usable:
// HostName is required.
type ClientConfig struct {
	// Rand supplies every random byte (X25519 and SRP private values, the
	// new long-term key, altIRK). Nil means crypto/rand.
	Rand io.Reader
	// HostName is sent as sendingHost and as the INFO name.
	HostName string
	// Identifier is the host identifier registered at pair-setup M5.
	// Empty means HostIdentifier(HostName), pymobiledevice3's choice.
	Identifier string
	// Info replaces the M5 INFO dictionary (tests replaying a reference).
	// Nil means placeholders around Identifier, HostName and a random
	// altIRK (remotepairing.md §4.7).
	Info *HostInfo
	// PIN is asked for the SRP password when the device answers M1 with
	// M2 without a consent event (Apple TV style network pairing).
	PIN func(ctx context.Context) (string, error)
	// Lockdown selects the lockdown-service flow: no consent, password
	// "000000" (remotepairing.md §1.4).
	Lockdown bool
	// AwaitingConsent is called when the device shows its Trust dialog.
	AwaitingConsent func()
	// Logger receives debug events; nil discards them. Keys and secrets
	// are never logged.
	Logger *slog.Logger
}

// Identity is a host's pairing identity towards one device.
type Identity struct {
	Identifier string
	PrivateKey ed25519.PrivateKey
}

// SetupResult is what pair-setup established.
type SetupResult struct {
	// Identity is the new long-term key and the identifier registered.
	Identity Identity
	// HostAltIRK is the altIRK sent in INFO.
	HostAltIRK []byte
	// Peer is the device identity from M6.
	Peer *PeerInfo
}

// Client runs the host role over one Transport, step by step in protocol
// order: Handshake, then Verify or Setup, then encrypted requests. Calls
// must not overlap. After the first error every later call returns it.
type Client struct {
	t      Transport
	cfg    ClientConfig
	rand   io.Reader
	log    *slog.Logger
	seq    uint64
	ch     *channel
	shared []byte
	err    error
}

// NewClient prepares the host role over t. It sends nothing.
func NewClient(t Transport, cfg *ClientConfig) *Client {
	h := &Client{t: t, cfg: *cfg, rand: cfg.Rand, log: cfg.Logger}
	if h.rand == nil {
		h.rand = rand.Reader
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.cfg.Identifier == "" {
		h.cfg.Identifier = HostIdentifier(cfg.HostName)
	}
	return h
}

// Close closes the transport.
func (h *Client) Close() error { return h.t.Close() }

// SharedSecret returns the 32-byte pair-verify shared secret, the TLS PSK of
// the TCP tunnel (remotepairing.md §7.1), or nil before a successful Verify.
func (h *Client) SharedSecret() []byte { return append([]byte(nil), h.shared...) }

func (h *Client) fail(step Step, err error) error {
	if err == nil {
		return nil
	}
	err = stepErr(step, err)
	if h.err == nil {
		h.err = err
	}
	return err
}

func (h *Client) send(ctx context.Context, step Step, m *message) error {
	m.from, m.seq = originHost, h.seq
	// The counter advances on every message, plain or encrypted
	// (remotepairing.md §1.5).
	h.seq++
	if err := h.t.WriteEnvelope(ctx, m.tree()); err != nil {
		return stepErr(step, err)
	}
	h.log.Debug("pairing: sent", "step", string(step), "message", m.String())
	return nil
}

func (h *Client) recv(ctx context.Context, step Step) (*message, error) {
	env, err := h.t.ReadEnvelope(ctx)
	if err != nil {
		return nil, stepErr(step, err)
	}
	m, err := parseMessage(env)
	if err != nil {
		return nil, stepErr(step, err)
	}
	h.log.Debug("pairing: received", "step", string(step), "message", m.String())
	return m, nil
}

func (h *Client) sendData(ctx context.Context, step Step, kind string, start bool, data []byte) error {
	pd := &pairingData{data: data, kind: kind, startNewSession: start}
	if kind == kindSetupManual {
		pd.sendingHost, pd.hasSendingHost = h.cfg.HostName, true
	}
	return h.send(ctx, step, &message{kind: kindEvent, name: evPairingData, value: pd.value()})
}

// recvData reads a pairingData event.
func (h *Client) recvData(ctx context.Context, step Step) ([]byte, error) {
	m, err := h.recv(ctx, step)
	if err != nil {
		return nil, err
	}
	return dataOf(step, m)
}

func dataOf(step Step, m *message) ([]byte, error) {
	if m.kind != kindEvent || m.name != evPairingData {
		return nil, stepErr(step, unexpected("%v, want pairingData", m))
	}
	pd, err := parsePairingData(m.value)
	if err != nil {
		return nil, stepErr(step, err)
	}
	return pd.data, nil
}

// Handshake sends the handshake request and returns the device's answer.
func (h *Client) Handshake(ctx context.Context) (*HandshakeInfo, error) {
	if h.err != nil {
		return nil, h.err
	}
	if err := h.send(ctx, StepHandshake, handshakeRequest(0)); err != nil {
		return nil, h.fail(StepHandshake, err)
	}
	m, err := h.recv(ctx, StepHandshake)
	if err != nil {
		return nil, h.fail(StepHandshake, err)
	}
	info, err := parseHandshakeResponse(m)
	return info, h.fail(StepHandshake, err)
}

// Verify runs pair-verify with id. When the device reports an error (an
// unknown host or a bad signature: errors.Is(err, ErrAuthentication)), it
// sends pairVerifyFailed and the session stays usable for Setup, which is
// how a host falls back to pairing (remotepairing.md §3.5). Other failures are final.
func (h *Client) Verify(ctx context.Context, id Identity) error {
	if h.err != nil {
		return h.err
	}
	v, err := newVerifyHost(h.rand)
	if err != nil {
		return h.fail(StepVerifyM1, err)
	}
	if err := h.sendData(ctx, StepVerifyM1, kindVerifyManual, true, v.createM1()); err != nil {
		return h.fail(StepVerifyM1, err)
	}
	data, err := h.recvData(ctx, StepVerifyM2)
	if err != nil {
		return h.fail(StepVerifyM2, err)
	}
	if err := v.consumeM2(data); err != nil {
		return h.verifyFailed(ctx, StepVerifyM2, err)
	}
	if err := h.sendData(ctx, StepVerifyM3, kindVerifyManual, false, v.createM3(id.Identifier, id.PrivateKey)); err != nil {
		return h.fail(StepVerifyM3, err)
	}
	if data, err = h.recvData(ctx, StepVerifyM4); err != nil {
		return h.fail(StepVerifyM4, err)
	}
	if err := consumeVerifyM4(data); err != nil {
		return h.verifyFailed(ctx, StepVerifyM4, err)
	}
	h.shared = v.shared
	h.ch = newChannel(v.shared)
	return nil
}

// verifyFailed tells the device after a reported error; any other failure
// ends the session.
func (h *Client) verifyFailed(ctx context.Context, step Step, cause error) error {
	var de *DeviceError
	if !errors.As(cause, &de) {
		return h.fail(step, cause)
	}
	m := &message{kind: kindEvent, name: evPairVerifyFailed, value: tree{}}
	if err := h.send(ctx, StepVerifyFailed, m); err != nil {
		return h.fail(StepVerifyFailed, err)
	}
	return stepErr(step, cause)
}

// Setup runs pair-setup M1–M6 with a new long-term key. While the device
// shows its Trust dialog it waits as long as ctx allows (remotepairing.md §4.2); a
// refusal is a *RejectedError (errors.Is(err, ErrRejected)), a wrong PIN
// errors.Is(err, ErrAuthentication). Afterwards the control channel is keyed
// from the SRP K; the device expects a reconnect and pair-verify before a
// tunnel (remotepairing.md §4.9).
func (h *Client) Setup(ctx context.Context) (*SetupResult, error) {
	if h.err != nil {
		return nil, h.err
	}
	if err := h.sendData(ctx, StepSetupM1, kindSetupManual, true, createSetupM1()); err != nil {
		return nil, h.fail(StepSetupM1, err)
	}
	data, consent, err := h.awaitM2(ctx)
	if err != nil {
		return nil, h.fail(StepSetupM2, err)
	}
	password := trustPassword
	if !consent && !h.cfg.Lockdown {
		if h.cfg.PIN == nil {
			return nil, h.fail(StepSetupM2, ErrNeedPIN)
		}
		if password, err = h.cfg.PIN(ctx); err != nil {
			return nil, h.fail(StepSetupM2, err)
		}
	}
	salt, pubB, err := consumeSetupM2(data)
	if err != nil {
		return nil, h.fail(StepSetupM2, err)
	}
	s, err := newSetupHost(h.rand, password, salt, pubB)
	if err != nil {
		return nil, h.fail(StepSetupM3, err)
	}
	if err := h.sendData(ctx, StepSetupM3, kindSetupManual, false, s.createM3()); err != nil {
		return nil, h.fail(StepSetupM3, err)
	}
	if data, err = h.recvData(ctx, StepSetupM4); err != nil {
		return nil, h.fail(StepSetupM4, err)
	}
	if err := s.consumeM4(data); err != nil {
		return nil, h.fail(StepSetupM4, err)
	}

	res, info, err := h.newIdentity()
	if err != nil {
		return nil, h.fail(StepSetupM5, err)
	}
	m5 := s.createM5(res.Identity.Identifier, res.Identity.PrivateKey, info)
	if err := h.sendData(ctx, StepSetupM5, kindSetupManual, false, m5); err != nil {
		return nil, h.fail(StepSetupM5, err)
	}
	if data, err = h.recvData(ctx, StepSetupM6); err != nil {
		return nil, h.fail(StepSetupM6, err)
	}
	peer, err := s.consumeM6(data)
	if err != nil {
		return nil, h.fail(StepSetupM6, err)
	}
	res.Peer = peerInfoFrom(peer)
	if !res.Peer.SignatureOK {
		h.log.Warn("pairing: device M6 signature does not verify; continuing", "device", peer.identifier)
	}
	h.ch = newChannel(s.k)
	return res, nil
}

// awaitM2 reads past awaitingUserConsent to M2 and reports whether consent
// was asked for.
func (h *Client) awaitM2(ctx context.Context) (data []byte, consent bool, err error) {
	for {
		m, err := h.recv(ctx, StepSetupM2)
		if err != nil {
			return nil, consent, err
		}
		if m.kind == kindEvent {
			switch m.name {
			case evAwaitingConsent:
				consent = true
				if h.cfg.AwaitingConsent != nil {
					h.cfg.AwaitingConsent()
				}
				continue
			case evPairingRejected:
				return nil, consent, &RejectedError{Description: rejectionDescription(m.value)}
			}
		}
		data, err := dataOf(StepSetupM2, m)
		return data, consent, err
	}
}

// newIdentity draws the long-term key for this device (new per pairing, as
// pymobiledevice3 and idevice do; remotepairing.md §11) and builds INFO.
func (h *Client) newIdentity() (*SetupResult, []byte, error) {
	seed, err := readRand(h.rand, ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	res := &SetupResult{Identity: Identity{Identifier: h.cfg.Identifier, PrivateKey: ed25519.NewKeyFromSeed(seed)}}
	var hi HostInfo
	if h.cfg.Info != nil {
		hi = *h.cfg.Info
	} else {
		irk, err := readRand(h.rand, 16)
		if err != nil {
			return nil, nil, err
		}
		hi = defaultHostInfo(h.cfg.Identifier, h.cfg.HostName, irk)
	}
	res.HostAltIRK = hi.AltIRK
	info, err := hi.encode()
	return res, info, err
}

// request sends one encrypted request and returns its RESULT.
func (h *Client) request(ctx context.Context, step Step, name string, args any) (tree, error) {
	if h.err != nil {
		return nil, h.err
	}
	if h.ch == nil {
		return nil, stepErr(step, ErrNotVerified)
	}
	pt, err := requestJSON(name, args)
	if err != nil {
		return nil, h.fail(step, err)
	}
	if err := h.send(ctx, step, &message{kind: kindEncrypted, ciphertext: h.ch.sealRequest(pt)}); err != nil {
		return nil, h.fail(step, err)
	}
	m, err := h.recv(ctx, step)
	if err != nil {
		return nil, h.fail(step, err)
	}
	if m.kind != kindEncrypted {
		return nil, h.fail(step, unexpected("%v, want an encrypted response", m))
	}
	pt, err = h.ch.openResponse(m.ciphertext)
	if err != nil {
		return nil, h.fail(step, err)
	}
	res, err := parseResponse(pt, name)
	var re *RequestError
	if errors.As(err, &re) {
		// A refusal is an answer: the channel stays usable.
		return nil, stepErr(step, err)
	}
	return res, h.fail(step, err)
}

// CreateListener asks the device for a tunnel listener (remotepairing.md §6.4).
func (h *Client) CreateListener(ctx context.Context, req ListenerRequest) (*Listener, error) {
	res, err := h.request(ctx, StepCreateListener, reqCreateListener, req.args())
	if err != nil {
		return nil, err
	}
	l, err := parseListener(res)
	return l, h.fail(StepCreateListener, err)
}

// CreateRemoteUnlockKey asks for the escrow blob stored as
// remote_unlock_host_key; tvOS refuses with a *RequestError.
func (h *Client) CreateRemoteUnlockKey(ctx context.Context) (string, error) {
	res, err := h.request(ctx, StepRemoteUnlockKey, reqRemoteUnlockKey, tree{})
	if err != nil {
		return "", err
	}
	k, err := parseUnlockKey(res)
	return k, h.fail(StepRemoteUnlockKey, err)
}
