// Package mercury is the Go side of what iosmux says to macOS
// CoreDeviceService (CDS) on the Xcode↔CDS link ("Mercury"): the typed
// values CDS's Swift Codable bridge insists on, the CoreDevice schemas known
// so far, a validator that fails the way Apple's decoder does, the facts
// about a real device every value is computed from, and the reply (or
// passthrough) for each of the 15 allow-listed actions.
//
// The rules and their evidence are in docs/protocols/coredevice-schema.md;
// the socket that carries requests and replies between the dylib inside CDS
// and iosmux is in docs/protocols/coredevice-bridge.md (package dylib).
//
// # Values
//
// Values are package xpc's: an xpc.UUID is never an xpc.String, an Int64
// never a Uint64, and dictionaries keep their order. The Codable forms are
// helpers returning xpc values: RawEnum (an enum with a String raw value is
// the bare string), EnumCase (an auto-Codable enum is a one-key dictionary,
// {"case": {}}), OptionSet (one int64), SetOf (an array without duplicates),
// and DeviceIdentifier's custom keys.
//
// # Honesty
//
// Every builder is a pure function of Facts. A required field with no real
// source makes the builder fail (ErrNoHonestState); an optional one is left
// out; a type whose encoding was never captured cannot be built
// (ErrSchemaUnknown). Reply answers a request only when the truthful answer
// is known and encodable; everything else is Passthrough, which lets CDS's
// own code run and report what really happens.
//
//	request (from the dylib) ── Reply(req, facts) ──▶ Result{Reply, output validated}
//	                                               └─▶ Result{Passthrough, reason}
package mercury
