package tlspsk

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"
)

// TestNetConn runs x/net's net.Conn conformance suite over loopback TCP and
// over net.Pipe, for an AEAD and a CBC suite.
func TestNetConn(t *testing.T) {
	for _, id := range []uint16{TLS_PSK_WITH_AES_256_GCM_SHA384, TLS_PSK_WITH_AES_256_CBC_SHA384} {
		for _, p := range []struct {
			name string
			pipe func() (net.Conn, net.Conn, error)
		}{
			{"tcp", tcpPair},
			{"pipe", func() (net.Conn, net.Conn, error) { a, b := net.Pipe(); return a, b, nil }},
		} {
			t.Run(CipherSuiteName(id)+"/"+p.name, func(t *testing.T) {
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					a, b, err := p.pipe()
					if err != nil {
						return nil, nil, nil, err
					}
					ccfg, scfg := clientConfig(), serverConfig()
					ccfg.CipherSuites = []uint16{id}
					c, s := Client(a, ccfg), Server(b, scfg)
					if cerr, serr := handshakePair(t, c, s); cerr != nil || serr != nil {
						a.Close()
						b.Close()
						t.Fatalf("handshake: %v, %v", cerr, serr)
					}
					// Teardown closes the transport first: after a timeout test
					// neither peer reads, and Close would wait up to its 5 s
					// bound to deliver close_notify.
					return c, s, func() { a.Close(); b.Close(); c.Close(); s.Close() }, nil
				})
			})
		}
	}
}

func tcpPair() (net.Conn, net.Conn, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		ch <- c
		errc <- err
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	b, aerr := <-ch, <-errc
	if err != nil || aerr != nil {
		if a != nil {
			a.Close()
		}
		if b != nil {
			b.Close()
		}
		return nil, nil, err
	}
	return a, b, nil
}
