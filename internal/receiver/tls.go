package receiver

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// CertReloader serves a TLS certificate from a certificate and a key file and loads them
// again when either file changes (as when cert-manager renews a mounted Secret). A pair that
// does not load (say, half written) keeps the previous certificate in use.
type CertReloader struct {
	CertFile, KeyFile string
	Log               logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewCertReloader loads the pair and fails when it does not load.
func NewCertReloader(certFile, keyFile string, log logr.Logger) (*CertReloader, error) {
	c := &CertReloader{CertFile: certFile, KeyFile: keyFile, Log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// stamp identifies the current versions of both files.
func (c *CertReloader) fileStamp() (string, error) {
	var stamp string
	for _, f := range []string{c.CertFile, c.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

func (c *CertReloader) reload() error {
	stamp, err := c.fileStamp()
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	if c.cert != nil && stamp == c.stamp {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c.cert, c.stamp = &cert, stamp
	return nil
}

// GetCertificate is for tls.Config.GetCertificate. It looks at the files at most once per
// 100 ms.
func (c *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= 100*time.Millisecond {
		c.checked = now
		if err := c.reload(); err != nil {
			c.Log.Error(err, "Reloading the receiver's TLS certificate failed; the previous one stays in use")
		}
	}
	return c.cert, nil
}
