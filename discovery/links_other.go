//go:build !linux

package discovery

// NewLinkWatcher returns PollLinks: macOS and the others have no netlink.
// (A PF_ROUTE socket would do on macOS; polling once a second is what
// pymobiledevice3 does everywhere.) ignore holds extra interface name
// prefixes to skip.
func NewLinkWatcher(ignore []string) LinkWatcher {
	return &PollLinks{Ignore: ignore}
}
