package pairing

import (
	"bytes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// The encrypted control channel (remotepairing.md §6).
//
// Keys come from the session secret: the 32-byte pair-verify shared secret
// or the 64-byte SRP K right after pair-setup. One counter c, starting at 0,
// serves both directions: the host seals request c with the client key and
// nonce(c), the device seals its reply with the server key and the same
// nonce(c), and c advances once the reply is done. Strictly one request in
// flight.

type channel struct {
	client, server cipher.AEAD
	c              uint64
}

func newChannel(secret []byte) *channel {
	ck, sk := mainKeys(secret)
	return &channel{client: newAEAD(ck), server: newAEAD(sk)}
}

// Host side.

func (ch *channel) sealRequest(plaintext []byte) []byte {
	return ch.client.Seal(nil, counterNonce(ch.c), plaintext, nil)
}

func (ch *channel) openResponse(ciphertext []byte) ([]byte, error) {
	pt, err := ch.server.Open(nil, counterNonce(ch.c), ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted response does not open (counter %d)", ErrAuthentication, ch.c)
	}
	ch.c++
	return pt, nil
}

// Device side.

func (ch *channel) openRequest(ciphertext []byte) ([]byte, error) {
	pt, err := ch.client.Open(nil, counterNonce(ch.c), ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: encrypted request does not open (counter %d)", ErrAuthentication, ch.c)
	}
	return pt, nil
}

func (ch *channel) sealResponse(plaintext []byte) []byte {
	ct := ch.server.Seal(nil, counterNonce(ch.c), plaintext, nil)
	ch.c++
	return ct
}

// Request names (remotepairing.md §6.4).
const (
	reqCreateListener  = "createListener"
	reqRemoteUnlockKey = "createRemoteUnlockKey"
	respErrorExtended  = "errorExtended"
)

// Tunnel transports for createListener.
const (
	TransportTCP  = "tcp"
	TransportQUIC = "quic"
)

// ListenerRequest asks the device for a tunnel listener.
type ListenerRequest struct {
	// Transport is TransportTCP (iOS 18.2+) or TransportQUIC (17.x–18.1).
	Transport string
	// Key is the TLS PSK for tcp (the 32-byte pair-verify shared secret,
	// Host.SharedSecret) or the DER SubjectPublicKeyInfo of the QUIC client
	// key.
	Key []byte
	// PeerConnections is sent as peerConnectionsInfo when not empty.
	PeerConnections []PeerConnection
}

// PeerConnection is one peerConnectionsInfo entry.
type PeerConnection struct {
	OwningPID         int64  `json:"owningPID"`
	OwningProcessName string `json:"owningProcessName"`
}

// Listener is the device's createListener result.
type Listener struct {
	Port int `json:"port"`
	// DevicePublicKey is base64 DER SPKI (QUIC); ServiceName is listed by
	// appium's types. Both are unused for tcp.
	DevicePublicKey string `json:"devicePublicKey,omitempty"`
	ServiceName     string `json:"serviceName,omitempty"`
}

// requestJSON builds {"request": {"_0": {NAME: ARGS}}}.
func requestJSON(name string, args any) ([]byte, error) {
	return json.Marshal(tree{"request": tree{"_0": tree{name: args}}})
}

func (r *ListenerRequest) args() tree {
	a := tree{
		"key":                   base64.StdEncoding.EncodeToString(r.Key),
		"transportProtocolType": r.Transport,
	}
	if len(r.PeerConnections) > 0 {
		pcs := make([]any, len(r.PeerConnections))
		for i, p := range r.PeerConnections {
			pcs[i] = tree{"owningPID": p.OwningPID, "owningProcessName": p.OwningProcessName}
		}
		a["peerConnectionsInfo"] = pcs
	}
	return a
}

// decodeJSON parses a decrypted plaintext.
func decodeJSON(b []byte) (tree, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, malformed("encrypted payload is not JSON: %v", err)
	}
	if dec.More() {
		return nil, malformed("encrypted payload has data after the JSON value")
	}
	t, ok := normalizeJSON(v).(tree)
	if !ok {
		return nil, malformed("encrypted payload is %T, want an object", v)
	}
	return t, nil
}

// parseRequest returns the request name and arguments of a decrypted
// request.
func parseRequest(b []byte) (string, any, error) {
	t, err := decodeJSON(b)
	if err != nil {
		return "", nil, err
	}
	inner, ok := dictAt(t, "request", "_0")
	if !ok {
		return "", nil, malformed("encrypted message without request._0")
	}
	name, args, ok := soleKey(inner)
	if !ok {
		return "", nil, malformed("request names %d cases, want 1", len(inner))
	}
	return name, args, nil
}

// parseListenerRequest is the device's reading of createListener ARGS.
func parseListenerRequest(args any) (*ListenerRequest, error) {
	a, ok := args.(tree)
	if !ok {
		return nil, malformed("createListener arguments are %T", args)
	}
	r := &ListenerRequest{}
	r.Transport, _ = stringOf(a["transportProtocolType"])
	if r.Key, ok = bytesOf(a["key"]); !ok {
		return nil, malformed("createListener without a base64 key")
	}
	if pcs, ok := a["peerConnectionsInfo"].([]any); ok {
		for _, e := range pcs {
			m, _ := e.(tree)
			pid, _ := intOf(m["owningPID"])
			name, _ := stringOf(m["owningProcessName"])
			r.PeerConnections = append(r.PeerConnections, PeerConnection{OwningPID: pid, OwningProcessName: name})
		}
	}
	return r, nil
}

// responseJSON builds {"response": {"_1": {NAME: RESULT}}}.
func responseJSON(name string, result any) ([]byte, error) {
	return json.Marshal(tree{"response": tree{"_1": tree{name: result}}})
}

// errorJSON builds the errorExtended reply PMD3-TS reads (remotepairing.md §6.3).
func errorJSON(desc string) ([]byte, error) {
	return responseJSON(respErrorExtended, tree{"_0": tree{"userInfo": tree{"NSLocalizedDescription": desc}}})
}

// parseResponse returns the RESULT of a decrypted response to request, or a
// *RequestError for errorExtended.
func parseResponse(b []byte, request string) (tree, error) {
	t, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	inner, ok := dictAt(t, "response", "_1")
	if !ok {
		return nil, malformed("encrypted message without response._1")
	}
	if e, ok := inner[respErrorExtended]; ok {
		ui, _ := dictAt(e, "_0", "userInfo")
		desc, _ := stringOf(ui["NSLocalizedDescription"])
		return nil, &RequestError{Request: request, Description: desc}
	}
	res, ok := dictAt(inner, request)
	if !ok {
		return nil, malformed("response without %s", request)
	}
	return res, nil
}

func parseListener(res tree) (*Listener, error) {
	port, ok := intOf(res["port"])
	if !ok || port <= 0 || port > 65535 {
		return nil, malformed("createListener port %v", res["port"])
	}
	l := &Listener{Port: int(port)}
	l.DevicePublicKey, _ = stringOf(res["devicePublicKey"])
	l.ServiceName, _ = stringOf(res["serviceName"])
	return l, nil
}

func parseUnlockKey(res tree) (string, error) {
	k, ok := stringOf(res["hostKey"])
	if !ok {
		return "", malformed("createRemoteUnlockKey without hostKey")
	}
	return k, nil
}
