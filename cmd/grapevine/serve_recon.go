package main

import (
	"context"
	"sync"
)

// startRecon starts the recon listener and gossip. Until the recon package
// lands, the daemon serves HKP only and says so.
func (e *env) startRecon(ctx context.Context, d *daemon, b *basedir, wg *sync.WaitGroup, errc chan<- error) error {
	d.logger.Warn().Msg("recon is not enabled in this build; serving HKP only")
	return nil
}
