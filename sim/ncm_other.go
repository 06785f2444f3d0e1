//go:build !linux

package sim

import (
	"errors"
	"net/netip"
)

type ncmHost struct{ cfg NCMConfig }

type ncmLink struct {
	hostIf, service string
	deviceAddr      netip.Addr
}

func newNCMHost(*Device, NCMConfig) (*ncmHost, error) {
	return nil, errors.New("sim: USB-NCM emulation needs Linux network namespaces")
}

func (*ncmHost) upNCM(*boot, *plug) (*ncmLink, error) { return nil, errors.ErrUnsupported }
func (*ncmHost) upWiFi(*boot) (*ncmLink, error)       { return nil, errors.ErrUnsupported }
func (*ncmHost) close()                               {}
func (*ncmLink) down()                                {}
