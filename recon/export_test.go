package recon

import (
	"context"
	"net"
)

// SetDial replaces how s opens recon connections, so that tests can hand
// it net.Pipe ends.
func (s *Server) SetDial(dial func(ctx context.Context, addr string) (net.Conn, error)) {
	s.dial = dial
}
