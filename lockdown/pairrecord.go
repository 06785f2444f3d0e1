package lockdown

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"howett.net/plist"
)

// PairRecord is the classic host pair record (lockdown.md §7.1), as usbmuxd
// stores it and libimobiledevice, go-ios and pymobiledevice3 read it. The
// certificates and keys are PEM.
type PairRecord struct {
	DeviceCertificate []byte `plist:"DeviceCertificate"`
	HostCertificate   []byte `plist:"HostCertificate"`
	HostPrivateKey    []byte `plist:"HostPrivateKey"`
	RootCertificate   []byte `plist:"RootCertificate"`
	RootPrivateKey    []byte `plist:"RootPrivateKey"`
	HostID            string `plist:"HostID"`
	SystemBUID        string `plist:"SystemBUID"`
	WiFiMACAddress    string `plist:"WiFiMACAddress,omitempty"`
	EscrowBag         []byte `plist:"EscrowBag,omitempty"`
	UDID              string `plist:"UDID,omitempty"`
}

// ParsePairRecord decodes a stored record (XML or binary plist) and checks
// that it can open a session: a HostID and a usable host certificate and
// key.
func ParsePairRecord(b []byte) (*PairRecord, error) {
	rec := new(PairRecord)
	if err := decodePlist(b, rec); err != nil {
		return nil, fmt.Errorf("lockdown: pair record: %w", err)
	}
	if rec.HostID == "" {
		return nil, errors.New("lockdown: pair record has no HostID")
	}
	if _, err := rec.HostTLSCertificate(); err != nil {
		return nil, err
	}
	return rec, nil
}

// Marshal encodes the record as an XML plist, the form usbmuxd stores.
func (r *PairRecord) Marshal() ([]byte, error) {
	b, err := plist.Marshal(r, plist.XMLFormat)
	if err != nil {
		return nil, fmt.Errorf("lockdown: encode pair record: %w", err)
	}
	return b, nil
}

// HostTLSCertificate is the client certificate for session and service
// TLS: HostCertificate with HostPrivateKey (PKCS#1 or PKCS#8 PEM).
func (r *PairRecord) HostTLSCertificate() (tls.Certificate, error) {
	c, err := tls.X509KeyPair(r.HostCertificate, r.HostPrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lockdown: pair record host certificate: %w", err)
	}
	return c, nil
}

// public is the part of the record a Pair or ValidatePair request carries:
// no private keys (libimobiledevice sends the same five keys).
func (r *PairRecord) public() map[string]any {
	return map[string]any{
		"DeviceCertificate": r.DeviceCertificate,
		"HostCertificate":   r.HostCertificate,
		"RootCertificate":   r.RootCertificate,
		"HostID":            r.HostID,
		"SystemBUID":        r.SystemBUID,
	}
}

// pemDER returns the DER bytes of the first PEM block of type typ.
func pemDER(b []byte, typ string) ([]byte, error) {
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == typ {
			return blk.Bytes, nil
		}
	}
	return nil, fmt.Errorf("no PEM %s block", typ)
}

// parseCertPEM parses the first certificate in PEM data.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	der, err := pemDER(b, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
