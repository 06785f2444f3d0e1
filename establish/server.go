package establish

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/iosmux/iosmux/lockdown"
	"github.com/iosmux/iosmux/pairing"
	"github.com/iosmux/iosmux/tlspsk"
	"github.com/iosmux/iosmux/tunnel"
	"github.com/quic-go/quic-go"
)

// The device side of establishment (tunnel.md §11): what the
// simulated iPhone runs on each path so that a tunnel.Server gets its sessions.
//
//	P1     lockdown.ServiceHandler{SSL: true, Serve: e.ServeCoreDeviceProxy}
//	P2/P3  pairing.ServerConfig.CreateListener = e.CreateListener(listen)
//	       tcp:  a TCP listener whose first connection that completes
//	             TLS-PSK with the createListener key carries the tunnel
//	       quic: a QUIC listener whose first connection presenting the
//	             createListener key carries the tunnel (datagrams)

// Default device-side limits (the real device's are UNCONFIRMED).
const (
	// DefaultHandshakeTimeout bounds the TLS-PSK, QUIC and CDTunnel
	// handshakes of a new tunnel transport.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultListenerTimeout is how long a createListener port waits for
	// the host.
	DefaultListenerTimeout = 30 * time.Second
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Tunnels receives the sessions; required.
	Tunnels *tunnel.Server
	// QUIC makes createListener accept transport quic (iOS 17.0–18.1);
	// false refuses it as iOS 18.2 does.
	QUIC bool
	// CipherSuites is the TLS-PSK server's preference; nil means
	// tlspsk.DefaultServerSuites.
	CipherSuites []uint16
	// HandshakeTimeout and ListenerTimeout; 0 means the defaults.
	HandshakeTimeout, ListenerTimeout time.Duration
	// Wrap, if set, sees every accepted tunnel TCP connection first (the
	// simulator tracks and shapes its connections); false refuses it.
	Wrap func(net.Conn) (net.Conn, bool)
	// Watch, if set, is told of each session when it starts and returns
	// what to call when it has ended.
	Watch func(*tunnel.Session) func()
	// Logger receives notes; nil discards.
	Logger *slog.Logger
}

// Server is the device side of establishment: it serves a tunnel.Server's
// tunnels on every path. Its goroutines (one per
// open createListener port and per tunnel it started) end with Close.
type Server struct {
	cfg    ServerConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	certOnce sync.Once
	cert     tls.Certificate // the device's QUIC certificate
	certSPKI []byte
	certErr  error
}

// NewServer returns a Server for cfg.Tunnels.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Tunnels == nil {
		return nil, errors.New("establish: server needs a tunnel.Server")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.ListenerTimeout <= 0 {
		cfg.ListenerTimeout = DefaultListenerTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: log, ctx: ctx, cancel: cancel}, nil
}

// Close stops every listener and tunnel the endpoint started and waits for
// their goroutines. The tunnel.Server stays open. It is idempotent.
func (e *Server) Close() error {
	e.cancel()
	e.wg.Wait()
	return nil
}

// go runs f on a goroutine the endpoint waits for; false when closed.
func (e *Server) goTracked(f func()) bool {
	if e.ctx.Err() != nil {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// ServeStream runs the device end of a tunnel on an established byte
// stream (P1's service TLS, TLS-PSK): CDTunnel, then the session until it
// ends, ctx ends or the endpoint closes. conn is closed either way.
func (e *Server) ServeStream(ctx context.Context, conn io.ReadWriteCloser) error {
	return e.serve(ctx, func(hctx context.Context) (*tunnel.Session, error) {
		return e.cfg.Tunnels.StartSession(hctx, conn)
	})
}

func (e *Server) serve(ctx context.Context, start func(context.Context) (*tunnel.Session, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()
	hctx, hcancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	s, err := start(hctx)
	hcancel()
	if err != nil {
		return fmt.Errorf("tunnel: device: CDTunnel: %w", err)
	}
	if e.cfg.Watch != nil {
		defer e.cfg.Watch(s)()
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		s.Close()
	}
	return nil
}

// ServeCoreDeviceProxy is the P1 service (tunnel.md §4), with the shape of
// lockdown.ServiceHandler.Serve: lockdown has done the service TLS on conn; the
// tunnel runs on it until it ends or the endpoint closes.
func (e *Server) ServeCoreDeviceProxy(conn net.Conn) {
	if err := e.ServeStream(e.ctx, conn); err != nil {
		e.log.Debug("tunnel: device: CoreDeviceProxy", "err", err)
	}
}

// CoreDeviceProxyService is the lockdown service entry for
// lockdown.CoreDeviceProxy (service TLS on).
func (e *Server) CoreDeviceProxyService() lockdown.ServiceHandler {
	return lockdown.ServiceHandler{SSL: true, Serve: e.ServeCoreDeviceProxy}
}

// Listen opens the device's tunnel ports where the host reached the
// control channel (the USB-NCM link-local address, the LAN address).
type Listen struct {
	// TCP opens a TCP listener on a fresh port (transport tcp).
	TCP func() (net.Listener, error)
	// UDP opens a UDP socket on a fresh port (transport quic); nil refuses
	// QUIC.
	UDP func() (net.PacketConn, error)
}

// CreateListener returns a pairing.ServerConfig.CreateListener that answers
// createListener (remotepairing.md §6.4, §9.5) with a port from listen
// and serves the tunnel arriving there.
func (e *Server) CreateListener(listen Listen) func(ctx context.Context, host string, req pairing.ListenerRequest) (*pairing.Listener, error) {
	return func(_ context.Context, _ string, req pairing.ListenerRequest) (*pairing.Listener, error) {
		switch req.Transport {
		case pairing.TransportTCP:
			return e.listenTCP(listen, req)
		case pairing.TransportQUIC:
			if !e.cfg.QUIC || listen.UDP == nil {
				return nil, errors.New("QUIC tunnels are not supported on this iOS version")
			}
			return e.listenQUIC(listen, req)
		}
		return nil, fmt.Errorf("unknown transport %q", req.Transport)
	}
}

func (e *Server) listenTCP(listen Listen, req pairing.ListenerRequest) (*pairing.Listener, error) {
	if len(req.Key) == 0 {
		return nil, errors.New("createListener without a key")
	}
	ln, err := listen.TCP()
	if err != nil {
		return nil, fmt.Errorf("tunnel listener: %w", err)
	}
	psk := bytes.Clone(req.Key)
	if !e.goTracked(func() { e.runPSKListener(ln, psk) }) {
		ln.Close()
		return nil, net.ErrClosed
	}
	return &pairing.Listener{Port: portOf(ln.Addr())}, nil
}

// runPSKListener waits for the host's TLS-PSK connection: the first one
// that completes the handshake with psk carries the tunnel; others (a port
// scan, a wrong key) are dropped while time is left. The listener closes
// once the tunnel starts or the wait ends.
func (e *Server) runPSKListener(ln net.Listener, psk []byte) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.ListenerTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	cfg := &tlspsk.Config{PSK: psk, CipherSuites: e.cfg.CipherSuites, DisableExtendedMasterSecret: true}
	for {
		nc, err := ln.Accept()
		if err != nil {
			e.log.Debug("tunnel: device: listener ended without a tunnel", "err", err)
			return
		}
		if e.cfg.Wrap != nil {
			c, ok := e.cfg.Wrap(nc)
			if !ok {
				nc.Close()
				return
			}
			nc = c
		}
		tc := tlspsk.Server(nc, cfg)
		hctx, hcancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
		err = tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			tc.Close()
			continue
		}
		ln.Close()
		stop()
		if err := e.ServeStream(e.ctx, tc); err != nil {
			e.log.Debug("tunnel: device: TLS-PSK tunnel", "err", err)
		}
		return
	}
}

// quicCert returns the device's QUIC certificate: a self-signed P-256 key
// made once per endpoint (the real device's key type is UNCONFIRMED; no
// host checks it).
func (e *Server) quicCert() (tls.Certificate, []byte, error) {
	e.certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			e.certErr = err
			return
		}
		if e.cert, e.certErr = selfSigned(key); e.certErr == nil {
			e.certSPKI, e.certErr = x509.MarshalPKIXPublicKey(&key.PublicKey)
		}
	})
	return e.cert, e.certSPKI, e.certErr
}

func (e *Server) listenQUIC(listen Listen, req pairing.ListenerRequest) (*pairing.Listener, error) {
	if _, err := x509.ParsePKIXPublicKey(req.Key); err != nil {
		return nil, fmt.Errorf("createListener key is not a public key: %w", err)
	}
	cert, spki, err := e.quicCert()
	if err != nil {
		return nil, err
	}
	want := bytes.Clone(req.Key)
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
		ClientAuth:   tls.RequireAnyClientCert,
		// The client's certificate must carry the key createListener
		// announced; the chain itself is self-signed and not checked.
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			if !bytes.Equal(c.RawSubjectPublicKeyInfo, want) {
				return errors.New("client certificate key differs from createListener's")
			}
			return nil
		},
	}
	udp, err := listen.UDP()
	if err != nil {
		return nil, fmt.Errorf("tunnel listener: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	ql, err := tr.Listen(tlsConf, quicConfig(0))
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, fmt.Errorf("tunnel listener: %w", err)
	}
	if !e.goTracked(func() { e.runQUICListener(ql, tr, udp) }) {
		tr.Close()
		udp.Close()
		return nil, net.ErrClosed
	}
	return &pairing.Listener{Port: portOf(udp.LocalAddr()), DevicePublicKey: base64.StdEncoding.EncodeToString(spki)}, nil
}

// runQUICListener serves the first QUIC connection that completes the
// handshake and opens the CDTunnel stream; the listener and socket close
// when that tunnel ends or the wait does.
func (e *Server) runQUICListener(ql *quic.Listener, tr *quic.Transport, udp net.PacketConn) {
	defer udp.Close()
	defer tr.Close()
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.ListenerTimeout)
	defer cancel()
	for {
		qc, err := ql.Accept(ctx)
		if err != nil {
			e.log.Debug("tunnel: device: QUIC listener ended without a tunnel", "err", err)
			return
		}
		hctx, hcancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
		st, err := qc.AcceptStream(hctx)
		hcancel()
		if err != nil {
			qc.CloseWithError(0, "")
			continue
		}
		pc := tunnel.NewDatagramConn(&quicDatagrams{qc: qc, stream: st})
		err = e.serve(e.ctx, func(hctx context.Context) (*tunnel.Session, error) {
			return e.cfg.Tunnels.StartPacketSession(hctx, st, pc)
		})
		if err != nil {
			e.log.Debug("tunnel: device: QUIC tunnel", "err", err)
		}
		return
	}
}

// portOf returns the port of a TCP or UDP address.
func portOf(a net.Addr) int {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.Port
	case *net.UDPAddr:
		return a.Port
	}
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}
