// Command autodeploy-image builds the manager's container image without a container engine
// and writes it as an OCI image layout (`make image` writes bin/image). Push it with
// `crane push bin/image <ref>` or `skopeo copy oci:bin/image docker://<ref>`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/imagebuild"
)

func main() {
	out := flag.String("out", "bin/image", "Directory to write the OCI image layout to (replaced if it holds one)")
	arch := flag.String("arch", runtime.GOARCH, "GOARCH of the image (its OS is linux)")
	version := flag.String("version", "", "org.opencontainers.image.version, and the image's name in the layout (required)")
	revision := flag.String("revision", "", "org.opencontainers.image.revision: the commit (required)")
	source := flag.String("source", imagebuild.DefaultSource, "org.opencontainers.image.source")
	created := flag.String("created", "", "Creation time, RFC 3339 (default now); the commit time makes the image reproducible")
	caBundle := flag.String("ca-bundle", imagebuild.DefaultCABundle, "PEM bundle of the CA certificates the image trusts")
	binary := flag.String("binary", "", "A manager binary built already (static, for linux and --arch); default: build ./cmd/manager")
	flag.Parse()
	if err := run(*out, *arch, *version, *revision, *source, *created, *caBundle, *binary); err != nil {
		fmt.Fprintln(os.Stderr, "autodeploy-image:", err)
		os.Exit(1)
	}
}

func run(out, arch, version, revision, source, created, caBundle, binary string) error {
	when := time.Now().UTC().Truncate(time.Second)
	if created != "" {
		var err error
		if when, err = time.Parse(time.RFC3339, created); err != nil {
			return fmt.Errorf("--created %q is no RFC 3339 time: %w", created, err)
		}
	}
	if binary == "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		defer stop()
		tmp, err := os.MkdirTemp("", "autodeploy-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		binary = filepath.Join(tmp, "manager")
		if err := imagebuild.BuildManager(ctx, ".", arch, binary); err != nil {
			return err
		}
	}
	img, err := imagebuild.Image(imagebuild.Options{Binary: binary, CABundle: caBundle, Arch: arch,
		Source: source, Revision: revision, Version: version, Created: when})
	if err != nil {
		return err
	}
	if err := imagebuild.WriteLayout(out, img, arch, version); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("Wrote the image linux/%s %s (version %s, revision %s) to %s\n", arch, digest, version, revision, out)
	return nil
}
