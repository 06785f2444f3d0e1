package sim

import (
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/iosmux/iosmux/internal/netns"
)

// netNS is the simulator's handle on a network namespace (internal/netns)
// with the ip(8) runner it configures links with.
type netNS struct{ *netns.NS }

// newNetNS creates an empty network namespace (needs CAP_SYS_ADMIN).
func newNetNS() (*netNS, error) {
	ns, err := netns.New()
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return &netNS{ns}, nil
}

// openNetNS opens an existing namespace by path; "" is the namespace of
// the calling process.
func openNetNS(path string) (*netNS, error) {
	ns, err := netns.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return &netNS{ns}, nil
}

// ip runs the ip(8) command inside the namespace; extra files are the
// child's descriptors 3, 4, ….
func (ns *netNS) ip(extra []*os.File, args ...string) error {
	return ns.Do(func() error {
		cmd := exec.Command("ip", args...)
		cmd.ExtraFiles = extra
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	})
}
