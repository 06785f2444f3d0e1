package notify

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/iosmux/iosmux/internal/safeplist"
)

// Commands of notification_proxy (notify.md §2).
const (
	CommandPost     = "PostNotification"    // host → device
	CommandObserve  = "ObserveNotification" // host → device
	CommandShutdown = "Shutdown"            // host → device
	CommandRelay    = "RelayNotification"   // device → host
	CommandDeath    = "ProxyDeath"          // device → host
)

// Message is one notification_proxy plist: a Command and, for posts,
// observations and relays, a Name.
type Message struct {
	Command string
	Name    string
}

// ErrMessage marks a plist that is not a notification_proxy message.
var ErrMessage = errors.New("notify: malformed message")

// ParseMessage reads one message's plist (XML or binary; without the
// lockdown frame). Command must be a string; Name, when present, too. Keys
// other hosts add (payloads, state) are ignored: Darwin notifications
// carry no data.
func ParseMessage(payload []byte) (Message, error) {
	var m map[string]any
	if err := safeplist.Unmarshal(payload, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrMessage, err)
	}
	return messageFrom(m)
}

func messageFrom(m map[string]any) (Message, error) {
	if m == nil {
		return Message{}, fmt.Errorf("%w: not a dictionary", ErrMessage)
	}
	cmd, ok := m["Command"].(string)
	if !ok {
		return Message{}, fmt.Errorf("%w: no Command string", ErrMessage)
	}
	msg := Message{Command: cmd}
	if v, present := m["Name"]; present {
		if msg.Name, ok = v.(string); !ok {
			return Message{}, fmt.Errorf("%w: %s with a Name that is not a string", ErrMessage, cmd)
		}
	}
	// Notification names are reverse-DNS text; bytes that are not UTF-8
	// could not be passed on as they came (plists carry text as UTF-8 or
	// UTF-16).
	if !utf8.ValidString(msg.Command) || !utf8.ValidString(msg.Name) {
		return Message{}, fmt.Errorf("%w: Command or Name is not UTF-8", ErrMessage)
	}
	return msg, nil
}

// plist is the message's dictionary, Name left out when empty.
func (m Message) plist() map[string]any {
	d := map[string]any{"Command": m.Command}
	if m.Name != "" {
		d["Name"] = m.Name
	}
	return d
}
