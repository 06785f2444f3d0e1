package pairing

// The envelope and its plain payloads (remotepairing.md §1.1).
//
//	{"message": {"plain": {"_0": PAYLOAD}} | {"streamEncrypted": {"_0": BYTES}},
//	 "originatedBy": "host" | "device", "sequenceNumber": N}
//
//	PAYLOAD = {"request":  {"_0": {NAME: VALUE}}}
//	        | {"response": {"forRequestIdentifier": N, "_1": {NAME: VALUE}}}
//	        | {"event":    {"_0": {NAME: VALUE}}}

const (
	originHost   = "host"
	originDevice = "device"
)

type msgKind int

const (
	kindRequest msgKind = iota + 1
	kindResponse
	kindEvent
	kindEncrypted
)

func (k msgKind) String() string {
	switch k {
	case kindRequest:
		return "request"
	case kindResponse:
		return "response"
	case kindEvent:
		return "event"
	case kindEncrypted:
		return "streamEncrypted"
	}
	return "invalid"
}

// message is one decoded envelope.
type message struct {
	kind msgKind
	// name and value: the single NAME key of a request, response or event
	// and what it holds.
	name  string
	value any
	// forRequest is the response's forRequestIdentifier (hosts ignore it).
	forRequest    uint64
	hasForRequest bool
	ciphertext    []byte
	from          string
	seq           uint64
}

func (m *message) String() string {
	if m.kind == kindEncrypted {
		return "streamEncrypted"
	}
	return m.kind.String() + " " + m.name
}

// tree encodes the envelope.
func (m *message) tree() tree {
	var msg tree
	switch m.kind {
	case kindEncrypted:
		msg = tree{"streamEncrypted": tree{"_0": m.ciphertext}}
	case kindRequest:
		msg = plain(tree{"request": tree{"_0": tree{m.name: m.value}}})
	case kindResponse:
		resp := tree{"_1": tree{m.name: m.value}}
		if m.hasForRequest {
			resp["forRequestIdentifier"] = m.forRequest
		}
		msg = plain(tree{"response": resp})
	case kindEvent:
		msg = plain(tree{"event": tree{"_0": tree{m.name: m.value}}})
	}
	return tree{"message": msg, "originatedBy": m.from, "sequenceNumber": m.seq}
}

func plain(payload tree) tree { return tree{"plain": tree{"_0": payload}} }

// parseMessage decodes an envelope tree. Unknown extra keys are ignored;
// a missing or non-integer sequenceNumber is tolerated (nobody validates it,
// remotepairing.md §1.5).
func parseMessage(t tree) (*message, error) {
	m := &message{}
	m.from, _ = stringOf(t["originatedBy"])
	if n, ok := intOf(t["sequenceNumber"]); ok && n >= 0 {
		m.seq = uint64(n)
	}
	body, ok := dictAt(t, "message")
	if !ok {
		return nil, malformed("envelope without a message dictionary")
	}
	if enc, ok := dictAt(body, "streamEncrypted"); ok {
		ct, ok := bytesOf(enc["_0"])
		if !ok {
			return nil, malformed("streamEncrypted without bytes")
		}
		m.kind, m.ciphertext = kindEncrypted, ct
		return m, nil
	}
	payload, ok := dictAt(body, "plain", "_0")
	if !ok {
		return nil, malformed("message is neither plain nor streamEncrypted")
	}
	kind, inner, ok := soleKey(payload)
	if !ok {
		return nil, malformed("plain payload with %d keys", len(payload))
	}
	innerMap, ok := inner.(tree)
	if !ok {
		return nil, malformed("plain %s is not a dictionary", kind)
	}
	var named tree
	switch kind {
	case "request":
		m.kind = kindRequest
		named, ok = dictAt(innerMap, "_0")
	case "event":
		m.kind = kindEvent
		named, ok = dictAt(innerMap, "_0")
	case "response":
		m.kind = kindResponse
		named, ok = dictAt(innerMap, "_1")
		if n, isInt := intOf(innerMap["forRequestIdentifier"]); isInt && n >= 0 {
			m.forRequest, m.hasForRequest = uint64(n), true
		}
	default:
		return nil, malformed("unknown plain payload %q", kind)
	}
	if !ok {
		return nil, malformed("%s without its case dictionary", kind)
	}
	if m.name, m.value, ok = soleKey(named); !ok {
		return nil, malformed("%s names %d cases, want 1", kind, len(named))
	}
	return m, nil
}

// Event names (remotepairing.md §1.1).
const (
	evPairingData         = "pairingData"
	evPairVerifyFailed    = "pairVerifyFailed"
	evAwaitingConsent     = "awaitingUserConsent"
	evPairingRejected     = "pairingRejectedWithError"
	reqHandshake          = "handshake"
	kindVerifyManual      = "verifyManualPairing"
	kindSetupManual       = "setupManualPairing"
	wireProtocolVersion   = 19
	deviceProtocolVersion = 26
	deviceMinimumVersion  = 8
)

// pairingData is the body of a pairingData event.
type pairingData struct {
	data            []byte
	kind            string
	startNewSession bool
	sendingHost     string
	hasSendingHost  bool
}

func (p *pairingData) value() tree {
	in := tree{"data": p.data, "kind": p.kind, "startNewSession": p.startNewSession}
	if p.hasSendingHost {
		in["sendingHost"] = p.sendingHost
	}
	return tree{"_0": in}
}

func parsePairingData(v any) (*pairingData, error) {
	in, ok := dictAt(v, "_0")
	if !ok {
		return nil, malformed("pairingData without _0")
	}
	p := &pairingData{}
	if p.data, ok = bytesOf(in["data"]); !ok {
		return nil, malformed("pairingData without data bytes")
	}
	p.kind, _ = stringOf(in["kind"])
	p.startNewSession, _ = boolOf(in["startNewSession"])
	p.sendingHost, p.hasSendingHost = stringOf(in["sendingHost"])
	return p, nil
}

// rejectionDescription extracts wrappedError.userInfo.NSLocalizedDescription
// from a pairingRejectedWithError body.
func rejectionDescription(v any) string {
	ui, _ := dictAt(v, "wrappedError", "userInfo")
	s, _ := stringOf(ui["NSLocalizedDescription"])
	return s
}

func rejectionValue(desc string) tree {
	// Members beside userInfo are UNCONFIRMED (remotepairing.md §1.1); hosts read only
	// the description.
	return tree{"wrappedError": tree{"userInfo": tree{"NSLocalizedDescription": desc}}}
}
