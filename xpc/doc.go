// Package xpc implements RemoteXPC: the XPC object encoding, the message
// wrapper, and a connection over HTTP/2 framing (h2c) in either role.
// The protocol, and the choices made where references disagree, are
// docs/protocols/xpc.md.
//
// # Values (xpc.md §3)
//
// Every object keeps its wire type: Int64 and Uint64, UUID and String, Data,
// Date and Double are distinct Go types, and a Dict keeps its entry order, so
// decoding then encoding reproduces the input bytes. CoreDeviceService rejects
// a uint64 where it expects an int64, so nothing here converts between them.
//
//	body := xpc.NewDict("MessageType", xpc.String("Handshake"), "UUID", id)
//	name := reply.Dict("Properties").String("ProductType")
//
// # Messages (xpc.md §2)
//
// A message is a 24-byte wrapper (magic 0x29B00B92, flags, body length, id)
// followed, when the body length is not zero, by the payload magic
// 0x42133742, version 5 and one root dictionary. Message.AppendBinary
// encodes; Decode and DecodeOptions.Decode parse from a []byte, bounding every
// length by the remaining input and a configurable maximum, and never panic.
// The decoder accepts go-ios's short array length (xpc.md §3.5) but the encoder
// never writes it.
//
// # Connections (xpc.md §1)
//
// Client and Server run RemoteXPC over a net.Conn with golang.org/x/net/http2's
// Framer (no net/http: HEADERS frames are empty). The client (host) writes
//
//	preface, SETTINGS{MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE},
//	WINDOW_UPDATE(0), HEADERS(1), DATA(1) HEADER{}, HEADERS(3),
//	DATA(1) PING, DATA(3) INIT_HANDSHAKE
//
// and the server (device) answers each step only after its trigger:
//
//	accept            -> SETTINGS, WINDOW_UPDATE(0)
//	client SETTINGS   -> SETTINGS ACK
//	HEADERS(n)        -> HEADERS(n)            (n = 1, 3)
//	DATA(1) HEADER{}  -> DATA(1) HEADER{}      (mirror)
//	DATA(1) PING      -> DATA(1) PING          (mirror)
//	DATA(3) INIT      -> DATA(3) INIT          (mirror)
//
// after which Server returns; an RSD server then sends its Handshake on stream
// 1. Requests travel on stream 1 with WANTS_REPLY, replies on stream 3 with
// the request's id. Each connection's state is owned by one goroutine; a
// reader goroutine hands it frames and a writer goroutine performs its writes.
package xpc
