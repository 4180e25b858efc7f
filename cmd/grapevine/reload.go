package main

import (
	"github.com/rs/zerolog"
)

// reloadConfig re-reads sksconf and the mailsync file on SIGHUP (with the
// membership, which the recon watcher reloads). What can change while
// serving changes now: debuglevel, the mailsync partners, and the HKP
// settings (search limits, body size, access log, rate limits, the stats
// page's names; hkp.Server.Reload). Options that bind sockets or move files
// (ports, addresses, basedir), gossip and the mail command take effect at
// the next start; a changed one is logged as such. A broken sksconf is
// logged and the running configuration is kept.
func (d *daemon) reloadConfig() {
	conf, paths, _, err := LoadSKSConf(d.conf.Basedir)
	if err == nil {
		err = conf.Validate()
	}
	if err != nil {
		d.logger.Error().Err(err).Msg("SIGHUP: sksconf not reloaded; keeping the running configuration")
		return
	}
	if conf.DebugLevel != d.conf.DebugLevel {
		// The daemon owns the process, so the process-wide level is its
		// to set: events below it are not even built.
		zerolog.SetGlobalLevel(levelFor(conf.DebugLevel))
		d.logger.Info().Int("debuglevel", conf.DebugLevel).Msg("SIGHUP: log level changed")
	}
	restart := map[string]bool{
		"hkp_address":    !equalStrings(conf.HKPAddress, d.conf.HKPAddress),
		"hkp_port":       conf.HKPPort != d.conf.HKPPort,
		"recon_address":  !equalStrings(conf.ReconAddress, d.conf.ReconAddress),
		"recon_port":     conf.ReconPort != d.conf.ReconPort,
		"basedir":        conf.Basedir != d.conf.Basedir,
		"metrics":        conf.MetricsAddress != d.conf.MetricsAddress,
		"gossip":         conf.GossipInterval != d.conf.GossipInterval || conf.DontGossip != d.conf.DontGossip,
		"mailsync setup": conf.DisableMailsync != d.conf.DisableMailsync || conf.SendmailCmd != d.conf.SendmailCmd,
	}
	for what, changed := range restart {
		if changed {
			d.logger.Warn().Str("option", what).Msg("SIGHUP: changed in sksconf; takes effect at the next start")
		}
	}
	if d.hkp != nil {
		// The stats page shows the ports actually served until restart.
		shown := *conf
		shown.HKPPort, shown.ReconPort = d.conf.HKPPort, d.conf.ReconPort
		if err := d.hkp.Reload(hkpConfig(&shown, d.logger, d.metrics)); err != nil {
			d.logger.Error().Err(err).Msg("SIGHUP: HKP settings not reloaded")
		}
	}
	mailsync := readMailsync(d.logger, paths.Mailsync)
	d.mu.Lock()
	d.mailsync = mailsync
	level := conf.DebugLevel
	d.conf.DebugLevel = level
	d.mu.Unlock()
	d.logger.Info().Int("mailsync_partners", len(mailsync)).Msg("SIGHUP: configuration reloaded")
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
