// Package tss is the personalization step of a DDI mount in both roles:
// the request to Apple's signing server (TSS) built from a build identity
// with its RestoreRequestRules applied, the HTTP exchange and the parse of
// its reply, and the stand-in the simulator and tests sign with instead of
// Apple (services.md §3.3).
//
//	host                                         TSS (Apple, or the stand-in)
//	POST <URL>  XML plist {@ApImg4Ticket, ApBoardID, ApChipID, ApECID,
//	            ApNonce, …, PersonalizedDMG{Digest, EPRO, ESEC, …},
//	            LoadableTrustCache{…}} ───────────────▶
//	        ◀─────────── STATUS=0&MESSAGE=SUCCESS&REQUEST_STRING=<plist {ApImg4Ticket}>
//	                     or STATUS=94&MESSAGE=This device isn't eligible …
//
// The URL is a setting: Apple's by default, a loopback stand-in in tests
// and air-gapped labs.
package tss
