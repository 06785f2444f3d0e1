package coredevice

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/iosmux/iosmux/xpc"
)

// Handler answers one invocation: the output, or an error (an *Error is
// sent as it is; any other error as CoreDeviceError 1 with its text).
type Handler func(ctx context.Context, req *Request) (xpc.Value, error)

// Server is the device role of one CoreDevice service.
type Server struct {
	// Name is the service's RSD name, for logs.
	Name string
	// Logger receives debug logs; nil discards.
	Logger *slog.Logger

	handlers map[string]Handler
	order    []string
}

// MaxInFlight bounds the invocations one connection runs at once (a
// monitorprocesstermination waits for as long as its process runs, so
// invocations do not wait for each other); beyond it the connection stops
// reading until one ends.
const MaxInFlight = 16

// Handle registers h for feature (short name or full identifier) or for an
// action (its full identifier, ActionPrefix…). Features are listed in
// registration order.
func (s *Server) Handle(feature string, h Handler) {
	if s.handlers == nil {
		s.handlers = map[string]Handler{}
	}
	id := feature
	if !strings.HasPrefix(id, ActionPrefix) {
		id = Feature(feature)
	}
	if _, ok := s.handlers[id]; !ok {
		s.order = append(s.order, id)
	}
	s.handlers[id] = h
}

// Features lists the registered features' identifiers (not actions), for
// the RSD entry.
func (s *Server) Features() []string {
	var out []string
	for _, id := range s.order {
		if strings.HasPrefix(id, FeaturePrefix) {
			out = append(out, id)
		}
	}
	return out
}

// Properties is the RSD entry's Properties for the service:
// {Features, ServiceVersion 1, UsesRemoteXPC true} (coredevice.md §1).
func (s *Server) Properties() *xpc.Dict {
	fs := xpc.Array{}
	for _, f := range s.Features() {
		fs = append(fs, xpc.String(f))
	}
	return xpc.NewDict("Features", fs, "ServiceVersion", xpc.Int64(1), "UsesRemoteXPC", xpc.Bool(true))
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Answer dispatches one request body and returns the reply body. Unknown
// features and actions get ActionError 2; a malformed envelope
// CoreDeviceError 1.
func (s *Server) Answer(ctx context.Context, body *xpc.Dict) *xpc.Dict {
	req, err := ParseRequest(body)
	if err != nil {
		return errorBody(err)
	}
	var h Handler
	if req.Feature != "" {
		h = s.handlers[req.Feature]
	} else {
		h = s.handlers[req.Action]
	}
	if h == nil {
		id := req.Feature
		if id == "" {
			id = req.Action
		}
		return NotImplemented(id).Body()
	}
	out, err := h(ctx, req)
	if err != nil {
		return errorBody(err)
	}
	return OutputBody(out)
}

func errorBody(err error) *xpc.Dict {
	var e *Error
	if errors.As(err, &e) {
		return e.Body()
	}
	return InvalidInput("%s", err.Error()).Body()
}

// ServeConn runs the RemoteXPC server set-up on nc and answers requests
// until the host hangs up or ctx ends. One-shot hosts (appium) close after
// one reply; others send many on one connection. Messages that want no
// reply are ignored.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	log := s.logger()
	conn, err := xpc.Server(ctx, nc, &xpc.Config{Name: s.Name, Logger: log})
	if err != nil {
		log.Debug("coredevice: set-up", "service", s.Name, "err", err)
		nc.Close()
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var wg sync.WaitGroup
	defer func() {
		// The host is gone: end the invocations still waiting (a
		// process monitor) before returning.
		cancel()
		wg.Wait()
		stop()
		conn.Close()
	}()
	slots := make(chan struct{}, MaxInFlight)
	for {
		m, _, err := conn.Receive(ctx)
		if err != nil {
			return
		}
		if !m.Flags.Has(xpc.FlagWantsReply) || m.Body == nil {
			log.Debug("coredevice: ignoring a message that wants no reply", "service", s.Name, "flags", m.Flags)
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			reply := s.Answer(ctx, m.Body)
			if err := conn.Reply(ctx, m, reply); err != nil {
				log.Debug("coredevice: reply", "service", s.Name, "err", err)
			}
		})
	}
}
