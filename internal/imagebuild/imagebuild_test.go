package imagebuild_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/imagebuild"
)

var created = time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC)

// binDir holds the manager binary the tests build (once, when a test first needs it).
var binDir string

func TestMain(m *testing.M) {
	var err error
	if binDir, err = os.MkdirTemp("", "imagebuild-test-"); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

var (
	buildOnce  sync.Once
	buildError error
)

// managerBinary builds the real manager binary, static for linux, as `make image` does.
func managerBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(binDir, "manager")
	buildOnce.Do(func() {
		buildError = imagebuild.BuildManager(context.Background(), filepath.Join("..", ".."), runtime.GOARCH, path)
	})
	if buildError != nil {
		t.Fatal(buildError)
	}
	return path
}

// TestImageLayoutHoldsTheManager builds the image from the real manager binary, writes the
// OCI image layout, and reads it back with go-containerregistry: one linux image, valid (every
// digest checks), running the static /manager as 65532 with the CA certificates, labelled
// with source, revision, version and creation time.
func TestImageLayoutHoldsTheManager(t *testing.T) {
	g := NewWithT(t)
	binary := managerBinary(t)
	ca, err := os.ReadFile(imagebuild.DefaultCABundle)
	g.Expect(err).NotTo(HaveOccurred(), "the build machine's CA bundle")
	img, err := imagebuild.Image(imagebuild.Options{Binary: binary, Revision: "0123456789abcdef0123456789abcdef01234567",
		Version: "v1.2.3", Created: created})
	g.Expect(err).NotTo(HaveOccurred())
	dir := filepath.Join(t.TempDir(), "image")
	g.Expect(imagebuild.WriteLayout(dir, img, "", "v1.2.3")).To(Succeed())

	// Read the layout back.
	idx, err := layout.ImageIndexFromPath(dir)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(validate.Index(idx)).To(Succeed())
	manifest, err := idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(manifest.Manifests).To(HaveLen(1), "one image, so that crane push and skopeo copy take it without a name")
	desc := manifest.Manifests[0]
	g.Expect(desc.MediaType).To(Equal(types.OCIManifestSchema1))
	g.Expect(desc.Annotations).To(HaveKeyWithValue(imagebuild.RefName, "v1.2.3"))
	g.Expect(desc.Platform).NotTo(BeNil())
	g.Expect(desc.Platform.OS).To(Equal("linux"))
	g.Expect(desc.Platform.Architecture).To(Equal(runtime.GOARCH))
	read, err := idx.Image(desc.Digest)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(validate.Image(read)).To(Succeed())

	cfg, err := read.ConfigFile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.OS).To(Equal("linux"))
	g.Expect(cfg.Architecture).To(Equal(runtime.GOARCH))
	g.Expect(cfg.Created.Time.Equal(created)).To(BeTrue(), "created %v", cfg.Created)
	g.Expect(cfg.Config.User).To(Equal("65532:65532"))
	g.Expect(cfg.Config.Entrypoint).To(Equal([]string{"/manager"}))
	g.Expect(cfg.Config.Cmd).To(BeEmpty())
	g.Expect(cfg.Config.Labels).To(Equal(map[string]string{
		"org.opencontainers.image.source":   "https://github.com/autodeploy-dev/autodeploy",
		"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.created":  "2026-05-04T03:02:01Z",
	}))
	m, err := read.Manifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(m.Config.MediaType).To(Equal(types.OCIConfigJSON))
	g.Expect(m.Annotations).To(Equal(cfg.Config.Labels))

	// The one layer's files.
	layers, err := read.Layers()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(layers).To(HaveLen(1))
	mt, err := layers[0].MediaType()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(mt).To(Equal(types.OCILayer))
	rc, err := layers[0].Uncompressed()
	g.Expect(err).NotTo(HaveOccurred())
	defer rc.Close()
	type file struct {
		hdr  *tar.Header
		data []byte
	}
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		g.Expect(err).NotTo(HaveOccurred())
		data, err := io.ReadAll(tr)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(h.ModTime.Equal(created)).To(BeTrue(), "%s has the creation time", h.Name)
		files["/"+strings.TrimSuffix(h.Name, "/")] = file{h, data}
	}
	names := []string{}
	for n := range files {
		names = append(names, n)
	}
	g.Expect(names).To(ConsistOf("/etc", "/etc/group", "/etc/passwd", "/etc/ssl", "/etc/ssl/certs",
		"/etc/ssl/certs/ca-certificates.crt", "/home", "/home/nonroot", "/manager", "/tmp"))

	manager := files["/manager"]
	g.Expect(manager.hdr.Typeflag).To(Equal(byte(tar.TypeReg)))
	g.Expect(manager.hdr.Mode & 0o777).To(Equal(int64(0o755)))
	want, err := os.ReadFile(binary)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(manager.data, want)).To(BeTrue(), "/manager is the binary built")
	exe, err := elf.NewFile(bytes.NewReader(manager.data))
	g.Expect(err).NotTo(HaveOccurred(), "/manager is an ELF executable")
	g.Expect(exe.Type).To(Equal(elf.ET_EXEC))
	for _, p := range exe.Progs {
		g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "/manager is statically linked")
	}
	libs, err := exe.ImportedLibraries()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(libs).To(BeEmpty())

	g.Expect(files["/etc/ssl/certs/ca-certificates.crt"].data).To(Equal(ca))
	g.Expect(string(files["/etc/passwd"].data)).To(ContainSubstring("\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	g.Expect(string(files["/etc/group"].data)).To(ContainSubstring("\nnonroot:x:65532:\n"))
	home := files["/home/nonroot"].hdr
	g.Expect(home.Typeflag).To(Equal(byte(tar.TypeDir)))
	g.Expect([]int{home.Uid, home.Gid}).To(Equal([]int{65532, 65532}))
	g.Expect(files["/tmp"].hdr.Mode & 0o7777).To(Equal(int64(0o1777)))
	for name, f := range files {
		if name != "/home/nonroot" {
			g.Expect([]int{f.hdr.Uid, f.hdr.Gid}).To(Equal([]int{0, 0}), "%s belongs to root: the user cannot change it", name)
		}
	}

	// The same inputs make the same image.
	again, err := imagebuild.Image(imagebuild.Options{Binary: binary, Revision: "0123456789abcdef0123456789abcdef01234567",
		Version: "v1.2.3", Created: created})
	g.Expect(err).NotTo(HaveOccurred())
	d1, err := read.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	d2, err := again.Digest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d2).To(Equal(d1))

	// Writing again replaces the layout rather than adding a second image.
	g.Expect(imagebuild.WriteLayout(dir, again, "", "v1.2.3")).To(Succeed())
	idx, err = layout.ImageIndexFromPath(dir)
	g.Expect(err).NotTo(HaveOccurred())
	manifest, err = idx.IndexManifest()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(manifest.Manifests).To(HaveLen(1))
}

// TestImageRefusesBadInput checks the clear errors: a dynamically linked binary, a binary of
// another architecture, a missing or empty CA bundle, missing labels, and a directory that is
// not a layout.
func TestImageRefusesBadInput(t *testing.T) {
	g := NewWithT(t)
	binary := managerBinary(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "empty.crt")
	g.Expect(os.WriteFile(notPEM, []byte("nothing\n"), 0o644)).To(Succeed())
	script := filepath.Join(dir, "manager.sh")
	g.Expect(os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)).To(Succeed())
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	// A dynamically linked executable of the build machine.
	shell, err := filepath.EvalSymlinks("/bin/sh")
	g.Expect(err).NotTo(HaveOccurred())

	for _, c := range []struct {
		name string
		opts imagebuild.Options
		want string
	}{
		{"dynamic", imagebuild.Options{Binary: shell}, "dynamically linked"},
		{"not ELF", imagebuild.Options{Binary: script}, "not an ELF executable"},
		{"other architecture", imagebuild.Options{Binary: binary, Arch: other}, "ELF machine is"},
		{"unknown architecture", imagebuild.Options{Binary: binary, Arch: "mips"}, `architecture "mips" is not supported`},
		{"missing CA bundle", imagebuild.Options{Binary: binary, CABundle: filepath.Join(dir, "none.crt")}, "reading the CA bundle"},
		{"no PEM", imagebuild.Options{Binary: binary, CABundle: notPEM}, "holds no PEM certificate"},
		{"no version", imagebuild.Options{Binary: binary, Version: "-"}, "revision and version are required"},
	} {
		o := c.opts
		if o.Version == "" {
			o.Version, o.Revision = "v1", "abc"
		} else if o.Version == "-" {
			o.Version = ""
		}
		o.Created = created
		_, err := imagebuild.Image(o)
		g.Expect(err).To(MatchError(ContainSubstring(c.want)), c.name)
	}

	full := t.TempDir()
	g.Expect(os.WriteFile(filepath.Join(full, "notes.txt"), []byte("keep me"), 0o644)).To(Succeed())
	img, err := imagebuild.Image(imagebuild.Options{Binary: binary, Version: "v1", Revision: "abc", Created: created})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(imagebuild.WriteLayout(full, img, "", "v1")).To(MatchError(ContainSubstring("holds no OCI image layout; refusing to overwrite")))
	g.Expect(filepath.Join(full, "notes.txt")).To(BeAnExistingFile())
}

// dockerfile is the final stage of a Dockerfile: its instructions with continuation lines
// joined, comments dropped, and the ARG defaults.
type dockerfile struct {
	instructions [][2]string // keyword (upper case), arguments
	args         map[string]string
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var d dockerfile
	for _, l := range lines {
		kw, rest, _ := strings.Cut(l, " ")
		kw = strings.ToUpper(kw)
		if kw == "FROM" {
			d = dockerfile{args: map[string]string{}} // a new stage
			continue
		}
		if kw == "ARG" {
			name, def, _ := strings.Cut(strings.TrimSpace(rest), "=")
			d.args[name] = def
		}
		d.instructions = append(d.instructions, [2]string{kw, strings.TrimSpace(rest)})
	}
	return d
}

func (d dockerfile) only(t *testing.T, kw string) string {
	t.Helper()
	var found []string
	for _, in := range d.instructions {
		if in[0] == kw {
			found = append(found, in[1])
		}
	}
	if len(found) != 1 {
		t.Fatalf("the final stage has %d %s instructions, want 1", len(found), kw)
	}
	return found[0]
}

var labelPair = regexp.MustCompile(`([A-Za-z0-9._-]+)=("(?:[^"\\]|\\.)*"|\S+)`)

// labels returns the LABEL pairs of the final stage, with ${ARG} replaced by args.
func (d dockerfile) labels(t *testing.T, args map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, in := range d.instructions {
		if in[0] != "LABEL" {
			continue
		}
		rest := in[1]
		for _, m := range labelPair.FindAllStringSubmatchIndex(rest, -1) {
			key, val := rest[m[2]:m[3]], rest[m[4]:m[5]]
			val = strings.Trim(val, `"`)
			val = regexp.MustCompile(`\$\{([A-Za-z_]+)\}`).ReplaceAllStringFunc(val, func(ref string) string {
				name := ref[2 : len(ref)-1]
				if _, declared := d.args[name]; !declared {
					t.Fatalf("LABEL %s uses ${%s}, which the final stage does not declare with ARG", key, name)
				}
				return args[name]
			})
			out[key] = val
		}
	}
	return out
}

// TestDockerfileAgreesWithTheImageBuilder checks that the Dockerfile's image runs what
// internal/imagebuild's does: the same USER, ENTRYPOINT, WORKDIR, binary path and labels
// (the build arguments VERSION, REVISION and CREATED giving the labels' values).
func TestDockerfileAgreesWithTheImageBuilder(t *testing.T) {
	g := NewWithT(t)
	d := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	g.Expect(d.only(t, "USER")).To(Equal(imagebuild.User))
	var entrypoint []string
	g.Expect(json.Unmarshal([]byte(d.only(t, "ENTRYPOINT")), &entrypoint)).To(Succeed(), "ENTRYPOINT in exec (JSON) form")
	g.Expect(entrypoint).To(Equal(imagebuild.Entrypoint))
	g.Expect(d.only(t, "WORKDIR")).To(Equal(imagebuild.WorkingDir))
	g.Expect(strings.Fields(d.only(t, "COPY"))).To(HaveExactElements(HavePrefix("--from="), Not(BeEmpty()), Equal(imagebuild.BinaryPath)))

	o := imagebuild.Options{Version: "v1.2.3", Revision: "0123456789abcdef0123456789abcdef01234567", Created: created}
	g.Expect(d.labels(t, map[string]string{"VERSION": o.Version, "REVISION": o.Revision, "CREATED": created.Format(time.RFC3339)})).To(
		Equal(imagebuild.Labels(o)))
}
