package lockdown

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"time"
)

// Certificate shapes follow what libimobiledevice generates and pmd3's
// ca.py mirrors (lockdown.md §7.2): RSA-2048 keys, empty subject and issuer,
// serial 1, valid from a minute ago for ten years, SHA-256; the root is a
// CA, the host and device certificates are leaves with digitalSignature and
// keyEncipherment, and the device certificate carries a subject key id.
const (
	keyBits      = 2048
	certValidity = 10 * 365 * 24 * time.Hour
)

// NewPairRecord creates a fresh host identity for pairing with a device:
// a root CA, a host certificate and a certificate for the device's public
// key (devicePublicKey is the PEM GetValue "DevicePublicKey" returns), all
// signed by the root. rand nil means crypto/rand.
func NewPairRecord(rnd io.Reader, devicePublicKey []byte, hostID, systemBUID string, now time.Time) (*PairRecord, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	devPub, err := parsePublicKeyPEM(devicePublicKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: device public key: %w", err)
	}
	rootKey, err := rsa.GenerateKey(rnd, keyBits)
	if err != nil {
		return nil, fmt.Errorf("lockdown: root key: %w", err)
	}
	hostKey, err := rsa.GenerateKey(rnd, keyBits)
	if err != nil {
		return nil, fmt.Errorf("lockdown: host key: %w", err)
	}
	root := template(now)
	root.IsCA = true
	rootDER, err := x509.CreateCertificate(rnd, root, root, &rootKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: root certificate: %w", err)
	}
	rootCert, err := x509.ParseCertificate(rootDER)
	if err != nil {
		return nil, err
	}
	hostDER, err := x509.CreateCertificate(rnd, leafTemplate(now), rootCert, &hostKey.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: host certificate: %w", err)
	}
	dev := leafTemplate(now)
	ski := sha1.Sum(x509.MarshalPKCS1PublicKey(devPub))
	dev.SubjectKeyId = ski[:]
	devDER, err := x509.CreateCertificate(rnd, dev, rootCert, devPub, rootKey)
	if err != nil {
		return nil, fmt.Errorf("lockdown: device certificate: %w", err)
	}
	return &PairRecord{
		DeviceCertificate: certPEM(devDER),
		HostCertificate:   certPEM(hostDER),
		HostPrivateKey:    keyPEM(hostKey),
		RootCertificate:   certPEM(rootDER),
		RootPrivateKey:    keyPEM(rootKey),
		HostID:            hostID,
		SystemBUID:        systemBUID,
	}, nil
}

func template(now time.Time) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certValidity),
		BasicConstraintsValid: true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
}

func leafTemplate(now time.Time) *x509.Certificate {
	t := template(now)
	t.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	return t
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// keyPEM writes PKCS#1 ("RSA PRIVATE KEY"): libimobiledevice reads the
// root key with PEM_read_bio_RSAPrivateKey, and every reference reads it.
func keyPEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

// PublicKeyPEM encodes a device key as GetValue "DevicePublicKey" carries
// it: PKCS#1 "RSA PUBLIC KEY".
func PublicKeyPEM(k *rsa.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(k)})
}

// parsePublicKeyPEM reads an RSA public key from PKCS#1 ("RSA PUBLIC
// KEY", what devices send) or PKIX ("PUBLIC KEY") PEM.
func parsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	if der, err := pemDER(b, "RSA PUBLIC KEY"); err == nil {
		return x509.ParsePKCS1PublicKey(der)
	}
	der, err := pemDER(b, "PUBLIC KEY")
	if err != nil {
		return nil, errors.New("no RSA PUBLIC KEY or PUBLIC KEY PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want RSA", k)
	}
	return rk, nil
}

// samePublicKey reports whether a certificate's key is k.
func samePublicKey(cert *x509.Certificate, k crypto.PublicKey) bool {
	pk, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pk.Equal(k)
}

// checkSignedBy verifies that parent signed cert. libimobiledevice 1.3.0
// signs its pairing certificates with SHA-1, which crypto/x509 refuses to
// verify; devices accept them, so the device role checks those signatures
// itself (RSA PKCS #1 v1.5 over SHA-1 of the TBS certificate).
func checkSignedBy(cert, parent *x509.Certificate) error {
	err := cert.CheckSignatureFrom(parent)
	var insecure x509.InsecureAlgorithmError
	if err == nil || !errors.As(err, &insecure) || cert.SignatureAlgorithm != x509.SHA1WithRSA {
		return err
	}
	if parent.BasicConstraintsValid && !parent.IsCA {
		return errors.New("signer is not a CA")
	}
	pub, ok := parent.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("SHA-1 RSA signature but a %T signer key", parent.PublicKey)
	}
	sum := sha1.Sum(cert.RawTBSCertificate)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA1, sum[:], cert.Signature)
}
