package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// Server runs the receiver as a manager runnable on every replica, leader or not.
type Server struct {
	Addr    string
	Handler http.Handler
	Log     logr.Logger
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
}

// NeedLeaderElection is false: every replica receives manifests.
func (s *Server) NeedLeaderElection() bool { return false }

// NewMux routes ManifestPath to h.
func NewMux(h http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(ManifestPath, h)
	return mux
}

// Start serves until ctx is done, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		// HTTP/2 stays off: a non-nil empty map disables the automatic upgrade.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	s.Log.Info("Serving build manifests", "address", ln.Addr().String(), "path", ManifestPath)
	errCh := make(chan error, 1)
	go func() { errCh <- srv.Serve(ln) }()
	select {
	case err := <-errCh:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
