package mercury

import (
	"errors"

	"github.com/iosmux/iosmux/xpc"
)

// ErrSchemaUnknown means a value was asked for whose encoding (or that of a
// type inside it) was never captured; nothing is invented for it.
var ErrSchemaUnknown = errors.New("mercury: schema unknown")

// ErrNoHonestState means a required field has no real source in the facts,
// so the value cannot be built without guessing.
var ErrNoHonestState = errors.New("mercury: no honest state")

// DeviceIdentifier is CoreDevice.DeviceIdentifier: .uuid(UUID, domain) or
// .ecid(UInt64). Only the uuid case has a known encoding.
type DeviceIdentifier struct {
	UUID   xpc.UUID
	Domain string
	// ECID, if set, makes this the .ecid case (not encodable yet).
	ECID *uint64
}

// UUIDIdentifier is .uuid(u, domain).
func UUIDIdentifier(u xpc.UUID, domain string) DeviceIdentifier {
	return DeviceIdentifier{UUID: u, Domain: domain}
}

// Value encodes the identifier with its custom keys:
// {"uuid": {"identifier": <uuid>, "domain": <string>}}. The .ecid case is
// ErrSchemaUnknown.
func (id DeviceIdentifier) Value() (*xpc.Dict, error) {
	if id.ECID != nil {
		return nil, errors.Join(ErrSchemaUnknown, errors.New("mercury: DeviceIdentifier.ecid keys were never captured"))
	}
	return xpc.NewDict("uuid", xpc.NewDict("identifier", id.UUID, "domain", xpc.String(id.Domain))), nil
}
