// Package notify speaks notification_proxy in both roles, over a
// connection to the service (services/reach opens one by RSD name,
// com.apple.mobile.notification_proxy.shim.remote, or lockdown name,
// com.apple.mobile.notification_proxy; the insecure variants speak the
// same). docs/protocols/notify.md has the details.
//
// Every message is a lockdown-framed plist {Command, Name}; posts and
// observations get no answer:
//
//	host                                      device
//	{Command: ObserveNotification, Name: A} ▶
//	{Command: PostNotification, Name: A} ───▶
//	               ◀──────────────────────── {Command: RelayNotification, Name: A}
//	{Command: Shutdown} ────────────────────▶
//	               ◀──────────────────────── {Command: ProxyDeath}
//
// Client posts, observes and waits for relays; Bus is the device's
// notification centre, serving every connection and the device's own
// posts; ParseMessage reads one message.
package notify
