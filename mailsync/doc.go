// Package mailsync is grapevine's PKS e-mail synchronisation, the bridge
// SKS kept to the pre-SKS PKS keyservers (spec ../shared/spec/mailsync.md;
// § below refer to it).
//
// # Outgoing
//
// A Sender follows the event log and mails every key submitted to this
// server's /pks/add (Event.Origin == eventlog.OriginHKP) to the partners of
// the mailsync file, one key per mail, in SKS's format (Message, §2.2),
// through sendmail_cmd (Sendmail, §2.2) or any Transport:
//
//	cfg := mailsync.DefaultConfig()
//	cfg.From = conf.FromAddress()
//	cfg.Recipients = daemon.MailsyncPeers
//	cfg.SendmailCmd = conf.SendmailCmd
//	cfg.CursorPath = filepath.Join(basedir, "grapevine", "mailsync-cursor")
//	s, err := mailsync.New(cfg, log, store, startAfter)
//	go s.Run(ctx)
//
// Keys that came by recon, by mail or by import are never mailed, so a key
// one server learns by mail is not mailed on again and keys do not travel
// in circles (§2.1). SKS keeps a queue table written in the same
// transaction as the key; grapevine's log record is that queue entry, and
// the Sender keeps only a cursor.
//
// On disk: DIR/grapevine/mailsync-cursor holds one decimal log index and a
// newline: every local submission at or before it has been handed to the
// transport. It is replaced (temp file, fsync, rename, directory fsync)
// after each successful send, so a crash between sending and writing the
// cursor mails that key once more on restart, and nothing is ever lost:
// delivery is at-least-once. A failed send is retried with exponential
// back-off (10 s doubling to 30 min) and later keys wait behind it, as in
// SKS. With no partners nothing is sent and nothing dropped (§4).
// disable_mailsync is the caller's business: it does not start the Sender
// (§3.6 of config.md).
//
// The mail carries the canonicalised key as submitted, which is what SKS
// queues, not the merged key (§2.1), and only when the submission changed
// the stored key.
//
// # Incoming
//
// ReadMail takes one mail as the MTA delivers it to `grapevine mail-in`
// (the drop-in for sks_add_mail, §3.1) and returns the sender and every
// public key in it: plain or MIME mail, nested multipart and message/rfc822
// parts, base64 and quoted-printable, armored or binary
// application/pgp-keys, any number of armor blocks (a superset of SKS,
// §3.2, §4). It refuses the whole mail when any key is broken (ErrNoKey,
// *MailError). The command appends the keys with Origin mail and the From
// address as Peer; this package does not write the log for incoming mail.
//
// Deliberate differences from SKS: mail-in imports at once instead of
// spooling to DIR/messages/ for a 10 s poll, and a mail with a broken key is
// refused whole (the MTA bounces or keeps it) instead of half merged and
// moved to failed_messages/.
package mailsync
