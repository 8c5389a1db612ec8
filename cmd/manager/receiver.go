package main

import (
	"errors"
	"flag"

	"golang.org/x/time/rate"

	"github.com/autodeploy-dev/autodeploy/internal/app"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// receiverFlags are the receiver's flags beyond its address and the manifest key file.
type receiverFlags struct {
	eventKeyFile, imageVariable string
	rate                        float64
	burst                       int
	tlsCert, tlsKey             string
	http2                       bool
}

func bindReceiverFlags(fs *flag.FlagSet) *receiverFlags {
	f := &receiverFlags{}
	fs.StringVar(&f.eventKeyFile, "eventbridge-key-file", "", "File holding the cluster-wide EventBridge API key (one per line; two during a rotation). Optional: without it /v1/events answers 401.")
	fs.StringVar(&f.imageVariable, "eventbridge-image-variable", receiver.DefaultImageVariable, "CodeBuild exported environment variable that names the image a build pushed.")
	fs.Float64Var(&f.rate, "receiver-rate", receiver.DefaultRate, "Authenticated requests per second each tenant (namespace, or * for the cluster-wide routes) may make; past it the receiver answers 429.")
	fs.IntVar(&f.burst, "receiver-burst", receiver.DefaultBurst, "Requests a tenant may make at once above --receiver-rate.")
	fs.StringVar(&f.tlsCert, "receiver-tls-cert-file", "", "TLS certificate (PEM) of the receiver; with --receiver-tls-key-file it serves HTTPS, reloading both when they change.")
	fs.StringVar(&f.tlsKey, "receiver-tls-key-file", "", "TLS private key (PEM) of the receiver.")
	fs.BoolVar(&f.http2, "receiver-enable-http2", false, "Allow HTTP/2 on the receiver (off: HTTP/1.1 only).")
	return f
}

// load reads the key files and returns the cluster-wide manifest keys (nil without a file)
// and the receiver options.
func (f *receiverFlags) load(manifestKeyFile string) (func() [][]byte, app.ReceiverOptions, error) {
	opts := app.ReceiverOptions{
		ImageVariable: f.imageVariable,
		Rate:          rate.Limit(f.rate),
		Burst:         f.burst,
		TLSCertFile:   f.tlsCert,
		TLSKeyFile:    f.tlsKey,
		EnableHTTP2:   f.http2,
	}
	if f.rate <= 0 || f.burst <= 0 {
		return nil, opts, errors.New("--receiver-rate and --receiver-burst must be positive")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, opts, errors.New("--receiver-tls-cert-file and --receiver-tls-key-file go together")
	}
	var keys func() [][]byte
	if manifestKeyFile != "" {
		kf, err := receiver.NewKeyFile(manifestKeyFile)
		if err != nil {
			return nil, opts, err
		}
		keys = kf.Keys
	}
	if f.eventKeyFile != "" {
		kf, err := receiver.NewKeyFile(f.eventKeyFile)
		if err != nil {
			return nil, opts, err
		}
		opts.EventKeys = kf.Keys
	}
	return keys, opts, nil
}
