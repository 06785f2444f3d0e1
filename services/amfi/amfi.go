package amfi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/iosmux/iosmux/lockdown"
)

// Action is the request's action number.
type Action int

// Actions of the amfi service.
const (
	ActionReveal Action = 0 // show the Developer Mode switch in Settings
	ActionArm    Action = 1 // turn Developer Mode on; the device reboots
	ActionAccept Action = 2 // answer the prompt shown after that reboot
	ActionStatus Action = 3 // read the status (idevice)
)

func (a Action) String() string {
	switch a {
	case ActionReveal:
		return "reveal"
	case ActionArm:
		return "enable"
	case ActionAccept:
		return "accept"
	case ActionStatus:
		return "status"
	}
	return fmt.Sprintf("action %d", int(a))
}

// Errors callers branch on.
var (
	// ErrPasscodeSet: the device refuses to arm Developer Mode while a
	// passcode is set; the user switches it on in Settings instead.
	ErrPasscodeSet = errors.New("amfi: the device has a passcode set")
	// ErrAlreadyOn: Developer Mode is already on; nothing to do.
	ErrAlreadyOn = errors.New("amfi: Developer Mode is already on")
	// ErrNotArmed: accept was sent before Developer Mode was armed and
	// the device rebooted.
	ErrNotArmed = errors.New("amfi: Developer Mode is not waiting for acceptance")
)

// DeviceError is a refusal from the device.
type DeviceError struct {
	Action  Action
	Message string // the reply's Error, or a description of a bad reply
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("amfi: %s refused: %s", e.Action, e.Message)
}

// Is maps the device's texts to the sentinels.
func (e *DeviceError) Is(target error) bool {
	m := strings.ToLower(e.Message)
	switch target {
	case ErrPasscodeSet:
		return strings.Contains(m, "passcode")
	case ErrNotArmed:
		return e.Action == ActionAccept && (strings.Contains(m, "not armed") || strings.Contains(m, "not waiting"))
	}
	return false
}

// Client sends amfi requests on one connection to the service.
type Client struct {
	pc *lockdown.PlistConn
}

// NewClient wraps a connection positioned at the service's first byte.
func NewClient(conn net.Conn) *Client {
	return &Client{pc: lockdown.NewPlistConn(conn, 0)}
}

// Close closes the connection.
func (c *Client) Close() error { return c.pc.Close() }

// Do sends one action and returns the reply. A reply with Error, or
// without a success key, is a *DeviceError (go-ios's test: every reference
// accepts a present success key; pmd3 also wants it true, so false is a
// refusal too).
func (c *Client) Do(ctx context.Context, a Action) (lockdown.Message, error) {
	if err := c.pc.Send(ctx, map[string]any{"action": int(a)}); err != nil {
		return nil, fmt.Errorf("amfi: %s: send: %w", a, err)
	}
	rep, err := c.pc.ReceiveMessage(ctx)
	if err != nil {
		return nil, fmt.Errorf("amfi: %s: read reply: %w", a, err)
	}
	return rep, checkReply(a, rep)
}

func checkReply(a Action, rep lockdown.Message) error {
	if e, ok := rep["Error"]; ok {
		return &DeviceError{Action: a, Message: fmt.Sprint(e)}
	}
	ok, present := rep.Bool("success")
	if !present {
		return &DeviceError{Action: a, Message: "reply without success"}
	}
	if !ok {
		return &DeviceError{Action: a, Message: "success is false"}
	}
	return nil
}

// Reveal makes the Developer Mode switch visible in Settings → Privacy &
// Security. No reboot.
func (c *Client) Reveal(ctx context.Context) error {
	_, err := c.Do(ctx, ActionReveal)
	return err
}

// Arm switches Developer Mode on; on success the device reboots by itself
// and waits for Accept. ErrPasscodeSet when it has a passcode.
func (c *Client) Arm(ctx context.Context) error {
	_, err := c.Do(ctx, ActionArm)
	return err
}

// Accept answers the prompt the device shows after the reboot that Arm
// caused. ErrNotArmed when it was not armed (or has not rebooted yet).
func (c *Client) Accept(ctx context.Context) error {
	_, err := c.Do(ctx, ActionAccept)
	return err
}

// Status reads the status with action 3 (answered by iOS 17+ devices
// idevice talks to; pmd3 and go-ios read it elsewhere).
func (c *Client) Status(ctx context.Context) (bool, error) {
	rep, err := c.Do(ctx, ActionStatus)
	if err != nil {
		return false, err
	}
	on, ok := rep.Bool("status")
	if !ok {
		return false, &DeviceError{Action: ActionStatus, Message: "reply without a status bool"}
	}
	return on, nil
}
