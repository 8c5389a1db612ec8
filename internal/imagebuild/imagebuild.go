// Package imagebuild builds the manager's container image without a container engine: a
// static manager binary, CA certificates and a non-root user in one layer, written as an OCI
// image layout that crane or skopeo push to a registry. It needs no base image (nothing is
// pulled); the layer holds what distroless/static:nonroot, the Dockerfile's base, provides to
// the manager. `make image` runs it through cmd/autodeploy-image.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image runs, and as whom. The Dockerfile says the same (a test compares them).
const (
	// User is the image's user and group: nonroot, as in distroless.
	User = "65532:65532"
	// UserName is the name /etc/passwd gives user 65532.
	UserName = "nonroot"
	// BinaryPath is where the manager binary is.
	BinaryPath = "/manager"
	// WorkingDir is the working directory.
	WorkingDir = "/"
	// CABundlePath is where the CA certificates are, where Go's crypto/x509 looks first on
	// Linux.
	CABundlePath = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultCABundle is the build machine's CA bundle (Debian, Ubuntu, Alpine).
	DefaultCABundle = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultSource is the project's source repository (org.opencontainers.image.source).
	DefaultSource = "https://github.com/autodeploy-dev/autodeploy"
)

// Entrypoint is the image's entrypoint.
var Entrypoint = []string{BinaryPath}

// OCI annotation keys of the image's labels (the OCI image spec's pre-defined annotations).
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelCreated  = "org.opencontainers.image.created"
	// RefName names the image in the layout's index (skopeo's oci:<dir>:<ref>).
	RefName = "org.opencontainers.image.ref.name"
)

// Options say what goes into the image.
type Options struct {
	// Binary is the manager binary: a static ELF executable for Arch.
	Binary string
	// CABundle is a PEM file of CA certificates (DefaultCABundle when empty).
	CABundle string
	// Arch is the GOARCH of the image (runtime.GOARCH when empty); the OS is linux.
	Arch string
	// Source, Revision and Version are the OCI labels: the repository URL (DefaultSource when
	// empty), the commit and the version. Revision and Version are required.
	Source, Revision, Version string
	// Created is the image's creation time; the files of the layer carry it too, so that
	// the same inputs make the same image.
	Created time.Time
}

func (o Options) withDefaults() Options {
	if o.CABundle == "" {
		o.CABundle = DefaultCABundle
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Source == "" {
		o.Source = DefaultSource
	}
	return o
}

// Labels returns the image's labels for these options.
func Labels(o Options) map[string]string {
	o = o.withDefaults()
	return map[string]string{
		LabelSource:   o.Source,
		LabelRevision: o.Revision,
		LabelVersion:  o.Version,
		LabelCreated:  o.Created.UTC().Format(time.RFC3339),
	}
}

// elfMachines are the architectures the image can be built for.
var elfMachines = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// CheckStatic returns an error unless data is a statically linked ELF executable for arch:
// the image has no C library and no dynamic loader.
func CheckStatic(data []byte, arch string) error {
	want, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("architecture %q is not supported (amd64, arm64, ppc64le, s390x)", arch)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("ELF machine is %s, want %s for %s", f.Machine, want, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (it names an ELF interpreter): build with CGO_ENABLED=0")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil {
		return fmt.Errorf("reading the ELF dynamic section: %w", err)
	} else if len(libs) > 0 {
		return fmt.Errorf("dynamically linked against %s: build with CGO_ENABLED=0", strings.Join(libs, ", "))
	}
	if f.Type != elf.ET_EXEC {
		return fmt.Errorf("ELF type is %s, want an executable (ET_EXEC): build with CGO_ENABLED=0 and without -buildmode=pie", f.Type)
	}
	return nil
}

// BuildManager builds the manager binary from the module in dir (./cmd/manager) for linux
// and arch into out, static (CGO_ENABLED=0) and stripped, as the Dockerfile does.
func BuildManager(ctx context.Context, dir, arch, out string) error {
	if arch == "" {
		arch = runtime.GOARCH
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/manager")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/manager for linux/%s: %w\n%s", arch, err, output)
	}
	return nil
}

// Image builds the image: one layer with the manager, the CA bundle, /etc/passwd and
// /etc/group for nonroot, its home and /tmp; the config runs BinaryPath as User.
func Image(o Options) (v1.Image, error) {
	o = o.withDefaults()
	if o.Revision == "" || o.Version == "" {
		return nil, errors.New("image: revision and version are required (the org.opencontainers.image labels)")
	}
	if o.Created.IsZero() {
		return nil, errors.New("image: the creation time is required")
	}
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("image: reading the manager binary: %w", err)
	}
	if err := CheckStatic(binary, o.Arch); err != nil {
		return nil, fmt.Errorf("image: manager binary %s: %w", o.Binary, err)
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("image: reading the CA bundle (set another with --ca-bundle): %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("image: CA bundle %s holds no PEM certificate", o.CABundle)
	}

	files, err := layerTar(o.Created, binary, ca)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(files)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	created := v1.Time{Time: o.Created.UTC()}
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created: created, CreatedBy: "autodeploy-image: " + BinaryPath + ", CA certificates, user " + UserName,
	}})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", o.Arch, created
	cfg.Config = v1.Config{
		User:       User,
		Entrypoint: Entrypoint,
		WorkingDir: WorkingDir,
		Labels:     Labels(o),
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "SSL_CERT_FILE=" + CABundlePath},
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	// The labels as manifest annotations too, which registries show without the config.
	return mutate.Annotations(img, Labels(o)).(v1.Image), nil
}

// layerTar returns the layer's files as a tar archive, in a fixed order with fixed times.
func layerTar(mtime time.Time, binary, ca []byte) ([]byte, error) {
	passwd := "root:x:0:0:root:/root:/sbin/nologin\n" + UserName + ":x:65532:65532:" + UserName + ":/home/" + UserName + ":/sbin/nologin\n"
	group := "root:x:0:\n" + UserName + ":x:65532:\n"
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte
		dir      bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: strings.TrimPrefix(CABundlePath, "/"), mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/" + UserName + "/", mode: 0o700, uid: 65532, gid: 65532, dir: true},
		{name: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: binary},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("image: layer %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout writes img as the only image of an OCI image layout in dir, named ref in the
// index. dir must not exist, be empty, or be an OCI image layout (which is replaced).
func WriteLayout(dir string, img v1.Image, arch, ref string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("image layout %s: %w", dir, err)
	case len(entries) > 0:
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("image layout %s: the directory is not empty and holds no OCI image layout; refusing to overwrite it", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("image layout %s: removing the previous layout: %w", dir, err)
		}
	}
	if arch == "" {
		arch = runtime.GOARCH
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image layout %s: %w", dir, err)
	}
	opts := []layout.Option{layout.WithPlatform(v1.Platform{OS: "linux", Architecture: arch})}
	if ref != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{RefName: ref}))
	}
	if err := p.AppendImage(img, opts...); err != nil {
		return fmt.Errorf("image layout %s: %w", dir, err)
	}
	return nil
}
