// Package pairing implements RemotePairing, the protocol a host uses to pair
// with an iPhone (iOS 17+) and to open its encrypted control channel, in both
// roles: Client, the host (what pymobiledevice3, go-ios or macOS do), and
// Server, the device (what the simulator and the proxy play). The protocol, and the choices made where
// references disagree, are docs/protocols/remotepairing.md.
//
// # Message sequence
//
// Every message is an envelope (remotepairing.md §1.1) carried by a
// Transport: RPPairing framing over TCP or the lockdown service (§1.3–§1.4),
// or the RemoteXPC tunnel service (§1.2). On each connection:
//
//	host                                              device
//	handshake request                          ->
//	                                           <-     handshake response (peerDeviceInfo)
//	pair-verify, when the host has a record (remotepairing.md §3):
//	V1 pairingData STATE=1 PUBLIC_KEY          ->
//	                                           <-     V2 STATE=2 PUBLIC_KEY ENCRYPTED_DATA
//	V3 STATE=3 ENCRYPTED_DATA (signature)      ->
//	                                           <-     V4 STATE=4 [ERROR=2 unknown host]
//	[pairVerifyFailed                          ->     after an ERROR]
//	pair-setup, on a new device (remotepairing.md §4):
//	M1 pairingData METHOD=0 STATE=1            ->
//	                                           <-     awaitingUserConsent (Trust dialog)
//	                                           <-     M2 STATE=2 SALT PUBLIC_KEY=B
//	                                                  or pairingRejectedWithError
//	M3 STATE=3 PUBLIC_KEY=A PROOF=M1           ->
//	                                           <-     M4 STATE=4 PROOF=M2 [ERROR=2 wrong PIN]
//	M5 ENCRYPTED_DATA (host identity) STATE=5  ->
//	                                           <-     M6 ENCRYPTED_DATA (device identity) STATE=6
//	encrypted control channel (remotepairing.md §6):
//	streamEncrypted createRemoteUnlockKey      ->
//	                                           <-     streamEncrypted hostKey
//	streamEncrypted createListener             ->     (after a verify)
//	                                           <-     streamEncrypted port
//
// After pair-setup the host saves a record, reconnects and runs pair-verify;
// the verify shared secret is the TLS PSK of the tunnel (remotepairing.md
// §7). Pair does all
// of that; Host exposes the individual steps.
//
// # Key schedule
//
// keys.go defines every HKDF salt/info pair and nonce label once; both roles
// use those definitions. Every pairing message has one create and one
// consume function (verify.go, setup.go), pure apart from the random bytes
// they read from the config's Rand, so transcripts replay byte for byte.
//
// # Records
//
// RecordStore reads and writes pymobiledevice3's pair records
// (~/.pymobiledevice3/remote_<identifier>.plist, remotepairing.md §8.1)
// atomically and with mode 0600; ImportGoIOS converts go-ios's
// selfIdentity/peers layout. Records, keys and secrets are never logged.
package pairing
