package receiver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// DefaultReadHeaderTimeout is how long a client may take to send the request headers; a
// slow-loris client trickling headers is cut off after it.
const DefaultReadHeaderTimeout = 5 * time.Second

// DefaultReadTimeout is how long a client may take to send a whole request; one that stops
// sending its body is answered 400 after it.
const DefaultReadTimeout = 15 * time.Second

// Server runs the receiver as a manager runnable on every replica, leader or not.
type Server struct {
	Addr    string
	Handler http.Handler
	Log     logr.Logger
	// Listener, when set, is used instead of listening on Addr.
	Listener net.Listener
	// ReadHeaderTimeout is DefaultReadHeaderTimeout when zero.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the whole request, body included: DefaultReadTimeout when zero.
	ReadTimeout time.Duration
	// TLSCertFile and TLSKeyFile, when set, serve HTTPS with that pair, reloaded when the
	// files change.
	TLSCertFile, TLSKeyFile string
	// EnableHTTP2 allows HTTP/2 (over TLS, or h2c with prior knowledge without TLS). Off by
	// default: HTTP/1.1 is all senders need, and it keeps HTTP/2's attack surface (rapid
	// reset, stream floods) closed.
	EnableHTTP2 bool
}

// NeedLeaderElection is false: every replica receives builds.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done, then shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	readHeader := s.ReadHeaderTimeout
	if readHeader <= 0 {
		readHeader = DefaultReadHeaderTimeout
	}
	readTimeout := s.ReadTimeout
	if readTimeout <= 0 {
		readTimeout = DefaultReadTimeout
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if s.EnableHTTP2 {
		protocols.SetHTTP2(true)
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: readHeader,
		ReadTimeout:       readTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		Protocols:         &protocols,
	}
	useTLS := s.TLSCertFile != "" || s.TLSKeyFile != ""
	if useTLS {
		if s.TLSCertFile == "" || s.TLSKeyFile == "" {
			return errors.New("receiver TLS needs both a certificate file and a key file")
		}
		// controller-runtime's certwatcher loads the pair again when either file changes (as
		// when cert-manager renews a mounted Secret, watched with fsnotify and polled every
		// second); a pair that does not load keeps the previous certificate in use.
		certs, err := certwatcher.New(s.TLSCertFile, s.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go func() {
			if err := certs.WithWatchInterval(time.Second).Start(watchCtx); err != nil {
				s.Log.Error(err, "Watching the receiver's TLS certificate failed; it is no longer reloaded")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	}
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	s.Log.Info("Serving builds", "address", ln.Addr().String(), "tls", useTLS, "http2", s.EnableHTTP2,
		"paths", []string{ManifestPath, NamespacedManifestPath, EventsPath, NamespacedEventsPath})
	errCh := make(chan error, 1)
	go func() {
		if useTLS {
			errCh <- srv.ServeTLS(ln, "", "")
		} else {
			errCh <- srv.Serve(ln)
		}
	}()
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
