package establish

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/quic-go/quic-go"
)

// QUIC tunnels (tunnel.md §6, remotepairing.md §7.2), iOS 17.0–18.1:
//
//	host                                               device
//	createListener quic, key = DER SPKI of a fresh RSA-2048 key  (control)
//	QUIC v1 + TLS 1.3, ALPN RemotePairingTunnelProtocol,
//	  client certificate self-signed over that key, DATAGRAM on ──▶
//	one 1024-byte DATAGRAM of padding ──────────────────────────▶
//	stream 0: CDTunnel request (mtu 1420) ──────────────────────▶
//	          ◀──────────────────────────────── CDTunnel response
//	one IPv6 packet per DATAGRAM, both ways ◀═══════════════════▶
//
// Neither side verifies the other's certificate chain; the device checks
// that the client certificate carries the key from createListener.

// ALPN is the QUIC tunnel's application protocol.
const ALPN = "RemotePairingTunnelProtocol"

// quicPadding is the size of the DATAGRAM both references send before the
// handshake (to settle the path MTU; whether the device needs it is
// UNCONFIRMED, so we send it).
const quicPadding = 1024

// quicMaxPacket is the largest UDP payload: pmd3 forces 1452 (1500 − 40 −
// 8), which is also quic-go's ceiling.
const quicMaxPacket = 1452

// quicConfig returns quic-go's configuration for either role: datagrams
// on, idle timeout (default 30 s) with PINGs at half of it (tunnel.md §8.2), packets
// of 1452 bytes from the start so that a 1420-byte tunnel packet fits one
// datagram without waiting for path MTU discovery.
func quicConfig(idle time.Duration) *quic.Config {
	if idle <= 0 {
		idle = 30 * time.Second
	}
	return &quic.Config{
		EnableDatagrams:   true,
		MaxIdleTimeout:    idle,
		KeepAlivePeriod:   idle / 2,
		InitialPacketSize: quicMaxPacket,
		// The handshake must not outwait the caller's context by much.
		HandshakeIdleTimeout: 10 * time.Second,
	}
}

// NewQUICClientKey returns the RSA-2048 key whose public half goes in
// createListener and whose self-signed certificate the QUIC client
// presents.
func NewQUICClientKey() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
}

// quicKeys makes QUIC client keys ahead of need. An RSA-2048 key costs
// about 100 ms of CPU, nine tenths of a QUIC tunnel's set-up in process
// (docs/perf.md "set-up time by step"). Every tunnel still gets a key of
// its own, as pymobiledevice3 and go-ios make one per createListener, so
// the device sees what it sees from them; only the making moves off the
// path: a QUIC attempt starts it while the control channel is set up and
// verified (prepare), and each tunnel, once up or failed, starts the next
// one for the next tunnel (a reconnect, another device). A process that never makes a QUIC
// tunnel never makes a key.
var quicKeys keyAhead

// keyAhead holds at most one key being made or made.
type keyAhead struct {
	mu   sync.Mutex
	next chan keyResult // nil: none under way
	// newKey makes a key; nil means NewQUICClientKey.
	newKey func() (*rsa.PrivateKey, error)
}

type keyResult struct {
	key *rsa.PrivateKey
	err error
}

// start makes a key in the background; the caller holds mu.
func (k *keyAhead) start() chan keyResult {
	ch := make(chan keyResult, 1)
	mk := k.newKey
	if mk == nil {
		mk = NewQUICClientKey
	}
	go func() {
		key, err := mk()
		ch <- keyResult{key, err}
	}()
	return ch
}

// prepare starts making a key unless one is made or under way.
func (k *keyAhead) prepare() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.next == nil {
		k.next = k.start()
	}
}

// ready reports whether a key is made and waiting (benchmarks).
func (k *keyAhead) ready() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.next) == 1
}

// PrepareQUIC starts making the key of the next QUIC tunnel now, so that
// even the first one does not wait for it (tunneld calls it at start when
// its protocol is QUIC). Without it the first attempt starts the key
// itself.
func PrepareQUIC() { quicKeys.prepare() }

// take returns the key made ahead, waiting for it if it is still being
// made (or making one now). No key is handed out twice; the caller
// prepares the next once its tunnel is up, so that making it does not
// slow this set-up down.
func (k *keyAhead) take(ctx context.Context) (*rsa.PrivateKey, error) {
	k.mu.Lock()
	ch := k.next
	if ch == nil {
		ch = k.start()
	}
	k.next = nil
	k.mu.Unlock()
	select {
	case r := <-ch:
		return r.key, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// selfSigned makes pmd3's client certificate (ca.py make_cert): empty
// subject and issuer, serial 1, valid from a minute ago for ten years,
// SHA-256 with RSA; go-ios's key usage and basic constraints are added,
// which pmd3's certificate lacks and no device is known to mind.
func selfSigned(key crypto.Signer) (tls.Certificate, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	if _, ok := key.Public().(*rsa.PublicKey); !ok {
		tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// startQUIC is the QUIC half of P2/P3 on a verified control channel.
func startQUIC(ctx context.Context, v *verified, method Method, host string, peers []pairing.PeerConnection, closers []io.Closer, opt *Options) (*Tunnel, error) {
	who := v.udid
	fail := func(step string, err error) (*Tunnel, error) {
		closeAllOf(closers)
		return nil, &Error{Device: who, Step: step, Err: err}
	}
	key, err := quicKeys.take(ctx)
	defer quicKeys.prepare() // the next tunnel's, made once this one is up
	if err != nil {
		return fail(StepCreateListener, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fail(StepCreateListener, err)
	}
	cert, err := selfSigned(key)
	if err != nil {
		return fail(StepQUIC, err)
	}
	opt.clock.mark(StepQUICKey)
	l, err := v.h.CreateListener(ctx, pairing.ListenerRequest{Transport: pairing.TransportQUIC, Key: spki, PeerConnections: peers})
	if err != nil {
		return fail(StepCreateListener, err)
	}
	opt.clock.mark(StepCreateListener)
	raddr, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(l.Port)))
	if err != nil {
		return fail(StepConnectListener, err)
	}
	listen := opt.ListenPacket
	if listen == nil {
		listen = net.ListenPacket
	}
	network := "udp4"
	if raddr.IP.To4() == nil {
		network = "udp6"
	}
	udp, err := listen(network, ":0")
	if err != nil {
		return fail(StepConnectListener, err)
	}
	tr := &quic.Transport{Conn: udp}
	closers = append(closers, udp, tr)
	tlsConf := &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // tunnel.md §6: no reference verifies the device
		NextProtos:         []string{ALPN},
		MinVersion:         tls.VersionTLS13,
		// go-ios prefers P-256; X25519 stays available.
		CurvePreferences: []tls.CurveID{tls.CurveP256, tls.X25519},
		KeyLogWriter:     opt.KeyLog,
	}
	qc, err := tr.Dial(ctx, raddr, tlsConf, quicConfig(opt.MaxIdleTimeout))
	if err != nil {
		return fail(StepQUIC, fmt.Errorf("%w: %w", ErrQUICUnsupported, err))
	}
	opt.clock.mark(StepQUIC)
	pc, params, err := quicClientHandshake(ctx, qc)
	if err != nil {
		return fail(StepCDTunnel, err)
	}
	opt.clock.mark(StepCDTunnel)
	dev, err := opt.newTUN()(params)
	if err != nil {
		pc.Close()
		return fail(StepTUN, err)
	}
	pump, err := tunnel.NewPump(tunnel.PumpConfig{
		TUN: dev, Conn: pc, MTU: params.MTU,
		Local: params.ClientAddress, Peer: params.ServerAddress,
		MaxSendPacket: opt.MaxSendPacket, Probe: opt.Probe, Logger: opt.Logger,
	})
	if err != nil {
		return fail(StepTUN, err)
	}
	opt.clock.mark(StepTUN)
	return newTunnel(who, method, QUIC, params, dev, pump, closers, opt.logger()), nil
}

// quicClientHandshake sends the padding datagram, runs CDTunnel on the
// first stream and returns the datagram PacketConn. The MTU is lowered to
// what one datagram carries, so that the TUN never hands the pump a packet
// QUIC cannot send. On error qc is closed.
func quicClientHandshake(ctx context.Context, qc *quic.Conn) (*tunnel.DatagramConn, tunnel.Params, error) {
	qd := &quicDatagrams{qc: qc}
	pc := tunnel.NewDatagramConn(qd)
	if err := qc.SendDatagram(make([]byte, quicPadding)); err != nil {
		pc.Close()
		return nil, tunnel.Params{}, fmt.Errorf("padding datagram: %w", err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		pc.Close()
		return nil, tunnel.Params{}, err
	}
	qd.stream = st
	params, err := tunnel.ClientHandshake(ctx, st, tunnel.QUICMTU)
	if err != nil {
		pc.Close()
		return nil, tunnel.Params{}, err
	}
	if m := qd.maxPayload(); m < params.MTU {
		params.MTU = max(m, tunnel.MinMTU)
	}
	return pc, params, nil
}

// quicDatagrams is a QUIC connection as tunnel.Datagrams: one packet per
// DATAGRAM frame (tunnel.md §3.2).
type quicDatagrams struct {
	qc     *quic.Conn
	stream *quic.Stream // the handshake stream, kept open (pmd3 never closes it)
}

var _ tunnel.Datagrams = (*quicDatagrams)(nil)

// tooLargeProbe is larger than any datagram QUIC can carry.
const tooLargeProbe = 64 << 10

// maxPayload asks quic-go how large a datagram may be: a send of an
// impossible size fails at once with the limit and sends nothing.
func (q *quicDatagrams) maxPayload() int {
	var tl *quic.DatagramTooLargeError
	if err := q.qc.SendDatagram(make([]byte, tooLargeProbe)); errors.As(err, &tl) {
		return int(tl.MaxDatagramPayloadSize)
	}
	return tooLargeProbe
}

func (q *quicDatagrams) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return q.qc.ReceiveDatagram(ctx)
}

// SendDatagram sends b as one datagram; one too large for a datagram is
// dropped, as a link drops what exceeds its MTU.
func (q *quicDatagrams) SendDatagram(b []byte) error {
	err := q.qc.SendDatagram(b)
	var tl *quic.DatagramTooLargeError
	if errors.As(err, &tl) {
		return nil
	}
	return err
}

// Close closes the connection with application error 0 and no reason, as
// go-ios does (tunnel.md §6).
func (q *quicDatagrams) Close() error {
	q.qc.CloseWithError(0, "")
	return nil
}
