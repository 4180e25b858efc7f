package hkp

// FrontServed returns how many requests s's front end answered itself
// (frontend.go), for tests that must tell its path from net/http's.
func FrontServed(s *Server) uint64 { return s.frontServed.Load() }
