// Package mdns is a small multicast DNS (RFC 6762) and DNS-SD (RFC 6763)
// implementation for one interface at a time, in both roles:
//
//   - Browse (the host): queries a service type on a link and returns the
//     instances with host, port, TXT and addresses. iosmux browses
//     _remoted._tcp on USB-NCM links, _remotepairing._tcp and
//     _apple-mobdev2._tcp on Wi-Fi (discovery.md §2.3, §3.1, §5).
//   - Responder (the simulated device): advertises service instances on a
//     link, as an iPhone advertises _remoted._tcp on its USB-Ethernet
//     function and _remotepairing._tcp on Wi-Fi.
//
// Message sequence of one browse (pymobiledevice3 bonjour.py sends the
// first query only; the rest is RFC 6762 §5.2):
//
//	host → 224.0.0.251 / ff02::fb%if :5353   query  PTR _remoted._tcp.local. (QU clear)
//	phone → group                            answer PTR → iPhone._remoted._tcp.local.
//	                                         additional SRV (host, port), TXT, AAAA/A
//	host → group (after 1 s, 2 s, …)         query again, listing known PTRs as known
//	                                         answers, plus SRV/TXT/AAAA for anything missing
//	phone → group (on Close)                 goodbye: every record with TTL 0
//
// Packets are encoded and decoded with golang.org/x/net/dns/dnsmessage and
// bounded (9000 bytes, 64 questions, 256 records); sockets use x/net/ipv4
// and ipv6 with control messages, so only datagrams that arrived on the
// chosen interface are seen.
package mdns
