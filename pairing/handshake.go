package pairing

// The handshake request and response (remotepairing.md §2).

// DeviceOptions are the device's capabilities from the handshake response.
type DeviceOptions struct {
	AllowsPairSetup                 bool `json:"allowsPairSetup"`
	AllowsPinlessPairing            bool `json:"allowsPinlessPairing"`
	AllowsIncomingTunnelConnections bool `json:"allowsIncomingTunnelConnections"`
	AllowsUpgradeOfLockdownPairings bool `json:"allowsUpgradeOfLockdownPairings"`
	AllowsSharingSensitiveInfo      bool `json:"allowsSharingSensitiveInfo"`
}

// PeerDeviceInfo describes the device. Identifier names the pair record
// (remotepairing.md §8.1); for iPhones over RSD it is the UDID.
type PeerDeviceInfo struct {
	Identifier                     string `json:"identifier"`
	UDID                           string `json:"udid"`
	Name                           string `json:"name"`
	Model                          string `json:"model"`
	DeviceKVSData                  []byte `json:"deviceKVSData,omitempty"`
	DeviceKVSIncludesSensitiveInfo bool   `json:"deviceKVSIncludesSensitiveInfo"`
}

// HandshakeInfo is the device's handshake response.
type HandshakeInfo struct {
	WireProtocolVersion                 int64          `json:"wireProtocolVersion"`
	MinimumSupportedWireProtocolVersion int64          `json:"minimumSupportedWireProtocolVersion"`
	Options                             DeviceOptions  `json:"deviceOptions"`
	Device                              PeerDeviceInfo `json:"peerDeviceInfo"`
}

// handshakeRequest builds the host's first message.
func handshakeRequest(seq uint64) *message {
	return &message{
		kind: kindRequest, name: reqHandshake, from: originHost, seq: seq,
		value: tree{"_0": tree{
			"hostOptions":         tree{"attemptPairVerify": true},
			"wireProtocolVersion": int64(wireProtocolVersion),
		}},
	}
}

// parseHandshakeRequest checks the device side's first message. The
// protocol version and options are not enforced (remotepairing.md §9.2).
func parseHandshakeRequest(m *message) error {
	if m.kind != kindRequest || m.name != reqHandshake {
		return unexpected("%v, want the handshake request", m)
	}
	if _, ok := dictAt(m.value, "_0"); !ok {
		return malformed("handshake request without _0")
	}
	return nil
}

func (h *HandshakeInfo) value() tree {
	o := h.Options
	d := h.Device
	pdi := tree{
		"identifier":                     d.Identifier,
		"udid":                           d.UDID,
		"name":                           d.Name,
		"model":                          d.Model,
		"deviceKVSIncludesSensitiveInfo": d.DeviceKVSIncludesSensitiveInfo,
	}
	if d.DeviceKVSData != nil {
		pdi["deviceKVSData"] = d.DeviceKVSData
	}
	return tree{"_0": tree{
		"wireProtocolVersion":                 h.WireProtocolVersion,
		"minimumSupportedWireProtocolVersion": h.MinimumSupportedWireProtocolVersion,
		"deviceOptions": tree{
			"allowsPairSetup":                 o.AllowsPairSetup,
			"allowsPinlessPairing":            o.AllowsPinlessPairing,
			"allowsIncomingTunnelConnections": o.AllowsIncomingTunnelConnections,
			"allowsUpgradeOfLockdownPairings": o.AllowsUpgradeOfLockdownPairings,
			"allowsSharingSensitiveInfo":      o.AllowsSharingSensitiveInfo,
		},
		"peerDeviceInfo": pdi,
	}}
}

// parseHandshakeResponse reads what hosts use from the response; missing
// members stay zero (only peerDeviceInfo.identifier matters, remotepairing.md §2).
func parseHandshakeResponse(m *message) (*HandshakeInfo, error) {
	if m.kind != kindResponse || m.name != reqHandshake {
		return nil, unexpected("%v, want the handshake response", m)
	}
	in, ok := dictAt(m.value, "_0")
	if !ok {
		return nil, malformed("handshake response without _0")
	}
	h := &HandshakeInfo{}
	h.WireProtocolVersion, _ = intOf(in["wireProtocolVersion"])
	h.MinimumSupportedWireProtocolVersion, _ = intOf(in["minimumSupportedWireProtocolVersion"])
	if o, ok := dictAt(in, "deviceOptions"); ok {
		h.Options.AllowsPairSetup, _ = boolOf(o["allowsPairSetup"])
		h.Options.AllowsPinlessPairing, _ = boolOf(o["allowsPinlessPairing"])
		h.Options.AllowsIncomingTunnelConnections, _ = boolOf(o["allowsIncomingTunnelConnections"])
		h.Options.AllowsUpgradeOfLockdownPairings, _ = boolOf(o["allowsUpgradeOfLockdownPairings"])
		h.Options.AllowsSharingSensitiveInfo, _ = boolOf(o["allowsSharingSensitiveInfo"])
	}
	if d, ok := dictAt(in, "peerDeviceInfo"); ok {
		h.Device.Identifier, _ = stringOf(d["identifier"])
		h.Device.UDID, _ = stringOf(d["udid"])
		h.Device.Name, _ = stringOf(d["name"])
		h.Device.Model, _ = stringOf(d["model"])
		h.Device.DeviceKVSData, _ = bytesOf(d["deviceKVSData"])
		h.Device.DeviceKVSIncludesSensitiveInfo, _ = boolOf(d["deviceKVSIncludesSensitiveInfo"])
	}
	return h, nil
}
