package rsd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/iosmux/iosmux/xpc"
)

// ServerConfig configures NewServer.
type ServerConfig struct {
	// Properties and Services are what the Handshake announces.
	Properties *xpc.Dict
	Services   []Service
	// UUID is the device's peer identity for this boot; zero means a fresh
	// random v4 UUID drawn from Rand. An all-zero UUID is never sent.
	UUID xpc.UUID
	// MessagingProtocolVersion; 0 means ProtocolVersion (7).
	MessagingProtocolVersion uint64
	// Rand is the randomness for the UUID; nil means crypto/rand.
	Rand io.Reader
	// XPC configures each connection; Name is filled in per connection.
	XPC *xpc.Config
	// SetupTimeout bounds each connection's RemoteXPC set-up; 0 means 10s.
	SetupTimeout time.Duration
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
}

// Server is the device side of RSD: it sends one Handshake per connection.
type Server struct {
	cfg  ServerConfig
	body *xpc.Dict
	log  *slog.Logger
}

// NewServer prepares a Server. Its UUID is fixed for the Server's lifetime
// (one simulated boot).
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.UUID.IsZero() {
		u, err := xpc.NewRandomUUID(cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("rsd: device uuid: %w", err)
		}
		cfg.UUID = u
	}
	if cfg.MessagingProtocolVersion == 0 {
		cfg.MessagingProtocolVersion = ProtocolVersion
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := Handshake{MessagingProtocolVersion: cfg.MessagingProtocolVersion, UUID: cfg.UUID,
		Properties: cfg.Properties, Services: cfg.Services}
	return &Server{cfg: cfg, body: h.Body(), log: log}, nil
}

// UUID returns the device UUID this server announces.
func (s *Server) UUID() xpc.UUID { return s.cfg.UUID }

// HandshakeBody returns the Handshake body the server sends.
func (s *Server) HandshakeBody() *xpc.Dict { return s.body }

// Peer is what a connected host announced about itself.
type Peer struct {
	// UUID is the host's Handshake UUID, zero if it sent none.
	UUID xpc.UUID
}

// ServeConn runs one RSD connection on an accepted nc: set-up, then the
// Handshake once the client's PING and INIT_HANDSHAKE arrived (never
// earlier, xpc.md §1.7), then it keeps the connection open, recording a host
// Handshake if one comes, until the peer leaves or ctx ends. A peer closing
// the connection is not an error.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) (Peer, error) {
	var peer Peer
	xcfg := xpc.Config{}
	if s.cfg.XPC != nil {
		xcfg = *s.cfg.XPC
	}
	xcfg.Name = "rsd"
	if a := nc.RemoteAddr(); a != nil {
		xcfg.Name = "rsd " + a.String()
	}
	setupCtx, cancel := context.WithTimeout(ctx, s.cfg.SetupTimeout)
	conn, err := xpc.Server(setupCtx, nc, &xcfg)
	cancel()
	if err != nil {
		return peer, fmt.Errorf("rsd: %w", err)
	}
	defer conn.Close()
	m := &xpc.Message{Flags: xpc.FlagsMsg, ID: DeviceMessageID, Body: s.body}
	if err := conn.Send(ctx, xpc.RootChannel, m); err != nil {
		return peer, fmt.Errorf("rsd: %s: sending Handshake: %w", conn.Name(), err)
	}
	s.log.Debug("rsd: sent Handshake", "conn", conn.Name())
	for {
		m, _, err := conn.Receive(ctx)
		if err != nil {
			// The peer leaving (EOF, reset, closed pipe) or ctx ending is
			// the normal end of an RSD connection; a protocol violation
			// is reported.
			var pe *xpc.ProtocolError
			if errors.As(err, &pe) {
				return peer, fmt.Errorf("rsd: %w", err)
			}
			return peer, nil
		}
		if m.Body.String("MessageType") == HandshakeType {
			peer.UUID = m.Body.UUID("UUID")
			s.log.Debug("rsd: host Handshake", "conn", conn.Name(), "uuid", peer.UUID)
		}
	}
}

// Serve accepts connections on ln and serves each until ctx ends; it then
// closes ln and returns after every connection finished.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("rsd: accept: %w", err)
		}
		wg.Go(func() {
			if _, err := s.ServeConn(ctx, nc); err != nil {
				s.log.Info("rsd: connection failed", "err", err)
			}
		})
	}
}
