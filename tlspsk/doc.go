// Package tlspsk is TLS 1.2 with a pre-shared key (RFC 4279 plain PSK),
// client and server, for the TCP tunnel to an iPhone (docs/protocols/tlspsk.md,
// remotepairing.md §7.1): the PSK is the 32-byte pair-verify secret and the
// identity is empty. crypto/tls has no PSK suites, so this package writes
// the protocol out; its shape follows crypto/tls (Config, Conn, a suite
// table, a half-connection per direction, straight-line handshakes).
//
// Message sequence (one full handshake; no resumption, no certificates):
//
//	client                                      server
//	ClientHello  (0x0303, random, suites,
//	              null compression; extensions
//	              only if ExtendedMasterSecret) -->
//	                                   <-- ServerHello (suite, EMS/RI echo)
//	                                       ServerKeyExchange (identity hint;
//	                                                          only if set)
//	                                       ServerHelloDone
//	ClientKeyExchange (psk identity)
//	ChangeCipherSpec
//	Finished (encrypted)                -->
//	                                   <-- ChangeCipherSpec
//	                                       Finished (encrypted)
//	application data                   <-> application data
//	close_notify                       <-> close_notify
//
// Keys: premaster = u16(len) ‖ zeros(len) ‖ u16(len) ‖ psk; master =
// PRF(premaster, "master secret", client_random ‖ server_random), or with
// RFC 7627 PRF(premaster, "extended master secret", Hash(messages through
// ClientKeyExchange)); key_block = PRF(master, "key expansion",
// server_random ‖ client_random). The PRF hash is SHA-384 for the *_SHA384
// suites and SHA-256 otherwise.
//
// Suites: TLS_PSK_WITH_AES_256_GCM_SHA384 (0x00A9),
// TLS_PSK_WITH_AES_128_GCM_SHA256 (0x00A8),
// TLS_PSK_WITH_AES_256_CBC_SHA384 (0x00AF), TLS_PSK_WITH_AES_128_CBC_SHA
// (0x008C) and TLS_PSK_WITH_CHACHA20_POLY1305_SHA256 (0xCCAB). By default a
// client offers, and a server prefers, the AEAD suites ahead of CBC: 0x00A9,
// 0x00A8, 0xCCAB, 0x00AF, 0x008C (tlspsk.md §3).
//
// Records: Write cuts its buffer into records of up to 16 KiB; WriteRecords
// keeps each buffer in records of its own (one IPv6 packet per record for
// the tunnel) yet hands many records to the conn in one write call, and
// ReadRecords reads one record per buffer, decrypted in place, as many per
// call as are already buffered.
//
// Refused: SSL 3.0, TLS 1.0 and 1.1 (protocol_version), compression,
// renegotiation (a HelloRequest or a ClientHello after the handshake gets a
// no_renegotiation warning and is ignored). Failures send the matching
// alert and surface as *AlertError; the first permanent error of each
// direction sticks. Timeouts do not break a Conn.
package tlspsk
