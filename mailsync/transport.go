package mailsync

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// Transport delivers one complete message. It returns nil only when the
// message was handed over for good (the sender then moves its cursor past
// it); any error means "try again later".
type Transport interface {
	Send(ctx context.Context, msg []byte) error
}

// TransportFunc adapts a function to Transport.
type TransportFunc func(ctx context.Context, msg []byte) error

// Send calls f.
func (f TransportFunc) Send(ctx context.Context, msg []byte) error { return f(ctx, msg) }

// Sendmail runs Command through /bin/sh -c with the message on stdin, as
// SKS does with sendmail_cmd (sendmail.ml): exit status 0 is success. The
// command is killed when ctx is done.
type Sendmail struct {
	Command string
}

// Send runs the command once.
func (s Sendmail) Send(ctx context.Context, msg []byte) error {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Command)
	cmd.Stdin = bytes.NewReader(msg)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		text := strings.TrimSpace(out.String())
		if len(text) > 512 {
			text = text[:512] + "…"
		}
		if text != "" {
			return fmt.Errorf("sendmail_cmd %q: %w: %s", s.Command, err, text)
		}
		return fmt.Errorf("sendmail_cmd %q: %w", s.Command, err)
	}
	return nil
}
