package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// Identity is what makes one simulated iPhone that device and no other:
// hardware identifiers, names and the permanent RemotePairing keys. It is
// derived deterministically from a seed and an index (DeriveIdentity) and,
// with a state directory, kept on disk so that restarts keep identity and
// pairings even if the derivation changes.
type Identity struct {
	UDID         string `json:"udid"`
	ECID         uint64 `json:"ecid"` // UniqueChipID
	SerialNumber string `json:"serialNumber"`
	DeviceName   string `json:"deviceName"`
	ProductType  string `json:"productType"`
	HWModel      string `json:"hwModel"`
	Platform     string `json:"hardwarePlatform"`
	ChipID       int64  `json:"chipID"`
	BoardID      int64  `json:"boardID"`
	ModelNumber  string `json:"modelNumber"`
	RegionInfo   string `json:"regionInfo"`
	WiFiMAC      string `json:"wifiMAC"`
	BluetoothMAC string `json:"bluetoothMAC"`
	EthernetMAC  string `json:"ethernetMAC"`

	// RemotePairing identity (remotepairing.md §9.1): the device pairing
	// identifier, the Ed25519 seed of its long-term key and its altIRK.
	PairingID   string `json:"pairingIdentifier"`
	PairingSeed []byte `json:"pairingSeed"`
	AltIRK      []byte `json:"altIRK"`
}

// model is one iPhone model the simulator can be. The iPhone11,6 and
// iPhone15,3 rows are the devices of the two published RSD handshakes
// (go-ios ios/rsd_test.go, iOS 17.0.3; pmd3 misc/RemoteXPC.md, iOS 17.0);
// for the two newer rows HWModel, platform and ChipID follow Apple's
// published scheme but BoardID and ModelNumber are UNCONFIRMED (SIM).
type model struct {
	productType, hwModel, platform, modelNumber string
	chipID, boardID                             int64
	maxMajor                                    int // last major iOS it runs
}

var models = []model{
	{"iPhone15,3", "D74AP", "t8120", "MQ9U3", 0x8120, 14, 99},
	{"iPhone11,6", "D331pAP", "t8020", "MT502", 0x8020, 26, 18},
	{"iPhone16,1", "D83AP", "t8130", "MTUV3", 0x8130, 12, 99},
	{"iPhone17,1", "D93AP", "t8140", "MYLQ3", 0x8140, 14, 99},
}

// DefaultSeed is the seed of `iosmux sim` without --seed.
const DefaultSeed = "iosmux-sim"

// DeriveIdentity returns device number index (0-based) of the fleet named
// by seed, for a device running profile (older models are skipped for
// releases they cannot run). The same arguments always give the same
// identity; different indexes never share a UDID.
func DeriveIdentity(seed string, index int, profile Profile) Identity {
	d := deriver{seed: seed, index: index}
	var eligible []model
	for _, m := range models {
		if profile.major == 0 || profile.major <= m.maxMajor {
			eligible = append(eligible, m)
		}
	}
	m := eligible[index%len(eligible)]
	// The ECID is 52 bits wide on the published devices. Its low 16 bits
	// are the index masked with a per-seed constant, so that the UDIDs of
	// one fleet never collide yet do not count upwards.
	mask := deriver{seed: seed, index: -1}.u64("ecid-mask")
	ecid := d.u64("ecid")&0x000F_FFFF_FFFF_0000 | (uint64(index)^mask)&0xFFFF
	return Identity{
		UDID:         fmt.Sprintf("%08X-%016X", m.chipID, ecid),
		ECID:         ecid,
		SerialNumber: d.serial(),
		DeviceName:   fmt.Sprintf("iPhone (sim %d)", index+1),
		ProductType:  m.productType,
		HWModel:      m.hwModel,
		Platform:     m.platform,
		ChipID:       m.chipID,
		BoardID:      m.boardID,
		ModelNumber:  m.modelNumber,
		RegionInfo:   "LL/A",
		WiFiMAC:      d.mac("wifi"),
		BluetoothMAC: d.mac("bluetooth"),
		EthernetMAC:  d.mac("ethernet"),
		PairingID:    d.uuid("pairing-identifier"),
		PairingSeed:  d.bytes("pairing-seed", 32),
		AltIRK:       d.bytes("alt-irk", 16),
	}
}

// deriver draws labelled deterministic bytes: SHA-256 over seed, index and
// label, chained for longer outputs. Not secret material in any real sense:
// a simulated device's keys only need to be stable.
type deriver struct {
	seed  string
	index int
}

func (d deriver) bytes(label string, n int) []byte {
	var out []byte
	for ctr := 0; len(out) < n; ctr++ {
		h := sha256.Sum256(fmt.Appendf(nil, "iosmux/sim\x00%s\x00%d\x00%s\x00%d", d.seed, d.index, label, ctr))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func (d deriver) u64(label string) uint64 { return binary.BigEndian.Uint64(d.bytes(label, 8)) }

// serialAlphabet is Apple's serial-number alphabet (no I or O).
const serialAlphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"

func (d deriver) serial() string {
	b := d.bytes("serial", 12)
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(serialAlphabet[int(c)%len(serialAlphabet)])
	}
	return s.String()
}

// mac is a locally administered unicast address, so a simulated device can
// never claim a real vendor's address.
func (d deriver) mac(label string) string {
	b := d.bytes(label, 6)
	b[0] = b[0]&0xfc | 0x02
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5])
}

// uuid is an upper-case version-4-shaped UUID, as Apple prints identifiers.
func (d deriver) uuid(label string) string {
	b := d.bytes(label, 16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := strings.ToUpper(hex.EncodeToString(b))
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// macBytes parses a "aa:bb:…" address; a malformed one gives zeros.
func macBytes(s string) []byte {
	out := make([]byte, 6)
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return out
	}
	for i, p := range parts {
		b, err := hex.DecodeString(p)
		if err != nil || len(b) != 1 {
			return make([]byte, 6)
		}
		out[i] = b[0]
	}
	return out
}

// validate checks an identity read from disk before it is used.
func (id *Identity) validate() error {
	switch {
	case id.UDID == "" || id.ProductType == "" || id.SerialNumber == "":
		return fmt.Errorf("sim: identity lacks UDID, ProductType or SerialNumber")
	case len(id.PairingSeed) != 32:
		return fmt.Errorf("sim: identity %s: pairing seed is %d bytes, want 32", id.UDID, len(id.PairingSeed))
	case len(id.AltIRK) != 16:
		return fmt.Errorf("sim: identity %s: altIRK is %d bytes, want 16", id.UDID, len(id.AltIRK))
	case id.PairingID == "":
		return fmt.Errorf("sim: identity %s lacks a pairing identifier", id.UDID)
	}
	return nil
}
