package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/iosmux/iosmux/services/mounter/tss"
)

// tssServer serves the DDI signing stand-in (tss.StandIn) on loopback.
type tssServer struct {
	standIn *tss.StandIn
	srv     *http.Server
	ln      net.Listener
	done    chan error
}

func startTSS(addr string, lookup func(uint64) (tss.KnownDevice, bool), log *slog.Logger) (*tssServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sim: TSS stand-in: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsLoopback() {
		log.Warn("sim: the TSS stand-in listens beyond loopback: anyone who reaches it can sign for the simulated devices", "addr", ln.Addr().String())
	}
	s := &tssServer{standIn: &tss.StandIn{Lookup: lookup}, ln: ln, done: make(chan error, 1)}
	s.srv = &http.Server{Handler: s.standIn, ReadHeaderTimeout: 10 * time.Second}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *tssServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		s.ln.Close()
	}
}

// signing finds a device of the fleet by ECID for the stand-in.
func (f *Fleet) signing(ecid uint64) (tss.KnownDevice, bool) {
	for _, d := range f.devices {
		if d != nil && d.id.ECID == ecid {
			return d.Signing(), true
		}
	}
	return tss.KnownDevice{}, false
}

// TSSURL is the signing stand-in's URL, "" unless FleetConfig.TSSAddr.
func (f *Fleet) TSSURL() string {
	if f.tss == nil {
		return ""
	}
	return "http://" + f.tss.ln.Addr().String() + "/TSS/controller?action=2"
}

// TSS is the signing stand-in (its request count, its last refusal), nil
// unless FleetConfig.TSSAddr.
func (f *Fleet) TSS() *tss.StandIn {
	if f.tss == nil {
		return nil
	}
	return f.tss.standIn
}
