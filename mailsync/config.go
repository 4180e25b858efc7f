package mailsync

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Config configures a Sender. Build it with DefaultConfig and change fields
// before New; Validate names the first unusable field.
type Config struct {
	// From is from_addr: the From, Reply-To, Errors-To and X-KeyServer-Sent
	// of every mail (mailsync.md §2.2). Required.
	From string

	// Recipients returns the mailsync partners at the time of each send,
	// so a reloaded mailsync file takes effect without a restart. All of
	// them go into one To: header joined with ", " (config.md §5). nil or
	// an empty result means "no partners": the queue is kept, nothing is
	// sent, and that is logged once (mailsync.md §4).
	Recipients func() []string

	// Transport delivers a message. nil means Sendmail{Command:
	// SendmailCmd}.
	Transport Transport
	// SendmailCmd is sendmail_cmd, run through /bin/sh -c with the message
	// on stdin when Transport is nil. Default "sendmail -t -oi" (SKS
	// settings.ml).
	SendmailCmd string
	// SendTimeout bounds one run of the transport. Default 5 minutes.
	SendTimeout time.Duration

	// CursorPath is the file that holds the index of the last event
	// handled. Required. See Sender for its format.
	CursorPath string

	// Hostname, when set, adds "Comment: Hostname: <hostname>" to the
	// armor, as SKS 1.1.6 does (hkp.md §5.1); "" omits it, as SKS master.
	Hostname string
	// ArmorVersion, when set, adds "Version: <ArmorVersion>" to the armor
	// (SKS 1.1.6 writes "SKS 1.1.6"); "" omits it.
	ArmorVersion string
	// ExtraHeaders adds Date, Message-ID and MIME-Version after SKS's
	// headers, the additions mailsync.md §4 recommends. false gives SKS's
	// exact header block.
	ExtraHeaders bool

	// RetryMin is the first wait after a failed send; each further failure
	// doubles it up to RetryMax. Default 10 s, SKS's sender tick
	// (mailsync.md §2.2); RetryMax default 30 minutes.
	RetryMin, RetryMax time.Duration
	// ApplyTimeout bounds the wait for the projections to apply an event
	// before it is mailed. Default 1 minute; on timeout the send is retried.
	ApplyTimeout time.Duration
	// ScanBatch is how many log entries one pass reads before it looks at
	// ctx again. Default 4096.
	ScanBatch int

	// Logger receives the sender's log lines. Default zerolog.Nop().
	Logger zerolog.Logger
}

// DefaultConfig returns the daemon's settings; From, Recipients and
// CursorPath still have to be set.
func DefaultConfig() Config {
	return Config{
		SendmailCmd:  "sendmail -t -oi", // SKS settings.ml sendmail_cmd
		SendTimeout:  5 * time.Minute,
		ExtraHeaders: true,
		RetryMin:     10 * time.Second, // SKS tries every 10 s (dbserver.ml)
		RetryMax:     30 * time.Minute,
		ApplyTimeout: time.Minute,
		ScanBatch:    4096,
		Logger:       zerolog.Nop(),
	}
}

// ConfigValidationError names the Config field that Validate rejected.
type ConfigValidationError struct {
	Field string
	Value any
	Err   string
}

func (e *ConfigValidationError) Error() string {
	return fmt.Sprintf("mailsync: config %s=%v: %s", e.Field, e.Value, e.Err)
}

// Validate checks c and returns a *ConfigValidationError for the first bad
// field.
func (c *Config) Validate() error {
	switch {
	case c.From == "":
		return &ConfigValidationError{"From", c.From, "must not be empty"}
	case c.Transport == nil && c.SendmailCmd == "":
		return &ConfigValidationError{"SendmailCmd", c.SendmailCmd, "must not be empty without a Transport"}
	case c.CursorPath == "":
		return &ConfigValidationError{"CursorPath", c.CursorPath, "must not be empty"}
	case c.SendTimeout <= 0:
		return &ConfigValidationError{"SendTimeout", c.SendTimeout, "must be positive"}
	case c.RetryMin <= 0:
		return &ConfigValidationError{"RetryMin", c.RetryMin, "must be positive"}
	case c.RetryMax < c.RetryMin:
		return &ConfigValidationError{"RetryMax", c.RetryMax, "must be at least RetryMin"}
	case c.ApplyTimeout <= 0:
		return &ConfigValidationError{"ApplyTimeout", c.ApplyTimeout, "must be positive"}
	case c.ScanBatch <= 0:
		return &ConfigValidationError{"ScanBatch", c.ScanBatch, "must be positive"}
	}
	return nil
}
