package taskdef_test

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

const otherImage = "123456789012.dkr.ecr.us-east-1.amazonaws.com/otel:b7"

func TestRegisterInputImagesSetsEveryContainerInOneRevision(t *testing.T) {
	g := NewWithT(t)
	td := richTaskDefinition()
	in, err := taskdef.RegisterInputImages(td, tags, map[string]string{"web": newImage, "otel": otherImage})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(in.ContainerDefinitions[0].Image)).To(Equal(newImage))
	g.Expect(aws.ToString(in.ContainerDefinitions[1].Image)).To(Equal(otherImage))
	// Nothing else differs from what the single-container derivation copies.
	single, err := taskdef.RegisterInput(richTaskDefinition(), tags, "web", newImage)
	g.Expect(err).NotTo(HaveOccurred())
	single.ContainerDefinitions[1].Image = aws.String(otherImage)
	g.Expect(taskdef.Equivalent(in, single)).To(BeTrue())
	// td is not modified.
	g.Expect(aws.ToString(td.ContainerDefinitions[0].Image)).To(Equal(webImage))
	g.Expect(aws.ToString(td.ContainerDefinitions[1].Image)).To(Equal(sidecarImage))
}

func TestRegisterInputImagesWithOneContainerIsRegisterInput(t *testing.T) {
	g := NewWithT(t)
	a, err := taskdef.RegisterInputImages(richTaskDefinition(), tags, map[string]string{"otel": newImage})
	g.Expect(err).NotTo(HaveOccurred())
	b, err := taskdef.RegisterInput(richTaskDefinition(), tags, "otel", newImage)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(taskdef.Equivalent(a, b)).To(BeTrue())
	// The empty name is the only container of a single-container task definition.
	c, err := taskdef.RegisterInputImages(singleContainer(), nil, map[string]string{"": newImage})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(aws.ToString(c.ContainerDefinitions[0].Image)).To(Equal(newImage))
}

func TestRegisterInputImagesNamesTheMissingContainer(t *testing.T) {
	g := NewWithT(t)
	_, err := taskdef.RegisterInputImages(richTaskDefinition(), tags, map[string]string{"web": newImage, "worker": otherImage})
	var nf *taskdef.ContainerNotFoundError
	g.Expect(errors.As(err, &nf)).To(BeTrue(), "%v", err)
	g.Expect(nf.Wanted).To(Equal("worker"))
	g.Expect(err.Error()).To(ContainSubstring(`container "worker" is not in the task definition (it has: otel, web)`))

	_, err = taskdef.RegisterInputImages(richTaskDefinition(), tags, nil)
	g.Expect(err).To(HaveOccurred())
}

func TestImagesReadsEveryNamedContainer(t *testing.T) {
	g := NewWithT(t)
	got, err := taskdef.Images(richTaskDefinition(), []string{"web", "otel"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(map[string]string{"web": webImage, "otel": sidecarImage}))

	_, err = taskdef.Images(richTaskDefinition(), []string{"web", "worker"})
	var nf *taskdef.ContainerNotFoundError
	g.Expect(errors.As(err, &nf)).To(BeTrue())
	g.Expect(nf.Wanted).To(Equal("worker"))
}
