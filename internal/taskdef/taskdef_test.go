package taskdef_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"

	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

const (
	webImage     = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api:141"
	sidecarImage = "public.ecr.aws/aws-observability/aws-otel-collector:v0.40.0"
	newImage     = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop-api@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

// readOnlyFields are the TaskDefinition fields DescribeTaskDefinition returns that
// RegisterTaskDefinition does not take.
var readOnlyFields = map[string]bool{
	"TaskDefinitionArn":  true,
	"Revision":           true,
	"Status":             true,
	"Compatibilities":    true,
	"RequiresAttributes": true,
	"RegisteredAt":       true,
	"RegisteredBy":       true,
	"DeregisteredAt":     true,
	"DeleteRequestedAt":  true,
}

// inputOnlyFields are the RegisterTaskDefinitionInput fields that do not come from the
// TaskDefinition.
var inputOnlyFields = map[string]bool{
	"Tags": true,
}

// richTaskDefinition returns a task definition with every field set. Each call returns a
// fresh value, so a test can compare against an untouched copy.
func richTaskDefinition() *types.TaskDefinition {
	registered := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	deregistered := registered.Add(time.Hour)
	return &types.TaskDefinition{
		TaskDefinitionArn: aws.String("arn:aws:ecs:us-east-1:123456789012:task-definition/shop-api:41"),
		Family:            aws.String("shop-api"),
		Revision:          41,
		Status:            types.TaskDefinitionStatusActive,
		Compatibilities:   []types.Compatibility{types.CompatibilityEc2, types.CompatibilityFargate},
		RequiresAttributes: []types.Attribute{
			{Name: aws.String("com.amazonaws.ecs.capability.logging-driver.awslogs")},
			{Name: aws.String("ecs.capability.secrets.asm.environment-variables")},
		},
		RegisteredAt:      &registered,
		RegisteredBy:      aws.String("arn:aws:iam::123456789012:role/deployer"),
		DeregisteredAt:    &deregistered,
		DeleteRequestedAt: &deregistered,

		ContainerDefinitions: []types.ContainerDefinition{
			{
				Name:      aws.String("web"),
				Image:     aws.String(webImage),
				Essential: aws.Bool(true),
				Cpu:       768,
				Memory:    aws.Int32(1536),
				Command:   []string{"./server", "--port=8080"},
				Environment: []types.KeyValuePair{
					{Name: aws.String("PORT"), Value: aws.String("8080")},
					{Name: aws.String("LOG_LEVEL"), Value: aws.String("info")},
				},
				PortMappings: []types.PortMapping{
					{ContainerPort: aws.Int32(8080), HostPort: aws.Int32(8080), Protocol: types.TransportProtocolTcp, Name: aws.String("http")},
				},
				Secrets: []types.Secret{
					{Name: aws.String("DB_PASSWORD"), ValueFrom: aws.String("arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf")},
				},
				LogConfiguration: &types.LogConfiguration{
					LogDriver: types.LogDriverAwslogs,
					Options: map[string]string{
						"awslogs-group":         "/ecs/shop-api",
						"awslogs-region":        "us-east-1",
						"awslogs-stream-prefix": "web",
					},
				},
				MountPoints: []types.MountPoint{{SourceVolume: aws.String("cache"), ContainerPath: aws.String("/cache")}},
				DependsOn:   []types.ContainerDependency{{ContainerName: aws.String("otel"), Condition: types.ContainerConditionStart}},
				HealthCheck: &types.HealthCheck{Command: []string{"CMD-SHELL", "curl -f http://localhost:8080/healthz"}, Interval: aws.Int32(10)},
			},
			{
				Name:      aws.String("otel"),
				Image:     aws.String(sidecarImage),
				Essential: aws.Bool(false),
				Cpu:       256,
				Environment: []types.KeyValuePair{
					{Name: aws.String("AWS_REGION"), Value: aws.String("us-east-1")},
				},
				PortMappings: []types.PortMapping{
					{ContainerPort: aws.Int32(4317), Protocol: types.TransportProtocolTcp},
				},
				Secrets: []types.Secret{
					{Name: aws.String("OTEL_TOKEN"), ValueFrom: aws.String("arn:aws:ssm:us-east-1:123456789012:parameter/otel-token")},
				},
				LogConfiguration: &types.LogConfiguration{
					LogDriver: types.LogDriverAwslogs,
					Options:   map[string]string{"awslogs-group": "/ecs/shop-api", "awslogs-stream-prefix": "otel"},
				},
			},
		},
		Volumes: []types.Volume{
			{Name: aws.String("cache"), Host: &types.HostVolumeProperties{}},
			{Name: aws.String("efs"), EfsVolumeConfiguration: &types.EFSVolumeConfiguration{FileSystemId: aws.String("fs-12345678")}},
		},
		Cpu:                     aws.String("1024"),
		Memory:                  aws.String("2048"),
		TaskRoleArn:             aws.String("arn:aws:iam::123456789012:role/shop-api-task"),
		ExecutionRoleArn:        aws.String("arn:aws:iam::123456789012:role/ecsTaskExecutionRole"),
		NetworkMode:             types.NetworkModeAwsvpc,
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		RuntimePlatform: &types.RuntimePlatform{
			CpuArchitecture:       types.CPUArchitectureArm64,
			OperatingSystemFamily: types.OSFamilyLinux,
		},
		EphemeralStorage: &types.EphemeralStorage{SizeInGiB: 40},
		ProxyConfiguration: &types.ProxyConfiguration{
			ContainerName: aws.String("envoy"),
			Type:          types.ProxyConfigurationTypeAppmesh,
			Properties:    []types.KeyValuePair{{Name: aws.String("AppPorts"), Value: aws.String("8080")}},
		},
		PlacementConstraints: []types.TaskDefinitionPlacementConstraint{
			{Type: types.TaskDefinitionPlacementConstraintTypeMemberOf, Expression: aws.String("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]")},
		},
		InferenceAccelerators: []types.InferenceAccelerator{{DeviceName: aws.String("device1"), DeviceType: aws.String("eia2.medium")}},
		PidMode:               types.PidModeTask,
		IpcMode:               types.IpcModeNone,
		EnableFaultInjection:  aws.Bool(true),
		TrustedExecutionConfiguration: &types.TrustedExecutionConfiguration{
			IsolationMode: types.IsolationModeIsolatedSandbox,
		},
	}
}

func singleContainer() *types.TaskDefinition {
	td := richTaskDefinition()
	td.ContainerDefinitions = td.ContainerDefinitions[:1]
	return td
}

var tags = []types.Tag{
	{Key: aws.String("team"), Value: aws.String("shop")},
	{Key: aws.String("cost-center"), Value: aws.String("42")},
}

func exportedFields(t reflect.Type) map[string]reflect.StructField {
	fields := map[string]reflect.StructField{}
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			fields[f.Name] = f
		}
	}
	return fields
}

// TestRegisterInputCopiesEveryWritableField fails when the SDK gains a task-definition field
// that RegisterInput does not copy, until the field is copied or listed above on purpose.
func TestRegisterInputCopiesEveryWritableField(t *testing.T) {
	g := NewWithT(t)
	td := richTaskDefinition()
	in, err := taskdef.RegisterInput(td, tags, "web", newImage)
	g.Expect(err).NotTo(HaveOccurred())

	tdFields := exportedFields(reflect.TypeFor[types.TaskDefinition]())
	inFields := exportedFields(reflect.TypeFor[ecs.RegisterTaskDefinitionInput]())
	tdValue, inValue := reflect.ValueOf(td).Elem(), reflect.ValueOf(in).Elem()

	for name := range tdFields {
		if _, ok := inFields[name]; !ok {
			g.Expect(readOnlyFields).To(HaveKey(name),
				"TaskDefinition.%s is not in RegisterTaskDefinitionInput: list it as read-only if it is", name)
			continue
		}
		g.Expect(readOnlyFields).NotTo(HaveKey(name), "%s is listed as read-only but RegisterTaskDefinitionInput takes it", name)
	}
	for name := range readOnlyFields {
		g.Expect(tdFields).To(HaveKey(name), "read-only field %s is not in TaskDefinition any more", name)
		// The fixture sets it, so leaving it out is meaningful.
		g.Expect(tdValue.FieldByName(name).IsZero()).To(BeFalse(), "the fixture does not set read-only field %s", name)
	}

	for name, f := range inFields {
		if inputOnlyFields[name] {
			continue
		}
		tdField, ok := tdFields[name]
		g.Expect(ok).To(BeTrue(), "RegisterTaskDefinitionInput.%s has no TaskDefinition counterpart: handle it in RegisterInput or list it as input-only", name)
		if !ok {
			continue
		}
		g.Expect(tdField.Type).To(Equal(f.Type), "field %s", name)
		src, dst := tdValue.FieldByName(name), inValue.FieldByName(name)
		g.Expect(src.IsZero()).To(BeFalse(), "the fixture does not set %s: set it so that the test can see it copied", name)
		if name == "ContainerDefinitions" {
			continue // Checked below: one image differs.
		}
		g.Expect(dst.Interface()).To(Equal(src.Interface()), "field %s not copied", name)
	}
	g.Expect(in.Tags).To(Equal(tags))

	want := richTaskDefinition().ContainerDefinitions
	want[0].Image = aws.String(newImage)
	g.Expect(in.ContainerDefinitions).To(Equal(want))
}

func TestRegisterInput(t *testing.T) {
	tests := []struct {
		name      string
		td        func() *types.TaskDefinition
		tags      []types.Tag
		container string
		// wantImages are the images of the containers, in order, in the input.
		wantImages []string
		wantTags   []types.Tag
		wantErr    *taskdef.ContainerNotFoundError
	}{
		{
			name: "first container", td: richTaskDefinition, tags: tags, container: "web",
			wantImages: []string{newImage, sidecarImage}, wantTags: tags,
		},
		{
			name: "second container", td: richTaskDefinition, tags: tags, container: "otel",
			wantImages: []string{webImage, newImage}, wantTags: tags,
		},
		{
			name: "no tags", td: richTaskDefinition, container: "web",
			wantImages: []string{newImage, sidecarImage},
		},
		{
			name: "empty tags are left out", td: richTaskDefinition, tags: []types.Tag{}, container: "web",
			wantImages: []string{newImage, sidecarImage},
		},
		{
			name: "the only container when none is named", td: singleContainer, tags: tags,
			wantImages: []string{newImage}, wantTags: tags,
		},
		{
			name: "the only container by name", td: singleContainer, container: "web",
			wantImages: []string{newImage},
		},
		{
			name: "no name with two containers", td: richTaskDefinition,
			wantErr: &taskdef.ContainerNotFoundError{Wanted: "", Available: []string{"otel", "web"}},
		},
		{
			name: "unknown name", td: richTaskDefinition, container: "api",
			wantErr: &taskdef.ContainerNotFoundError{Wanted: "api", Available: []string{"otel", "web"}},
		},
		{
			name: "name differing in case", td: richTaskDefinition, container: "Web",
			wantErr: &taskdef.ContainerNotFoundError{Wanted: "Web", Available: []string{"otel", "web"}},
		},
		{
			name: "unknown name with one container", td: singleContainer, container: "api",
			wantErr: &taskdef.ContainerNotFoundError{Wanted: "api", Available: []string{"web"}},
		},
		{
			name: "no containers", td: func() *types.TaskDefinition {
				td := richTaskDefinition()
				td.ContainerDefinitions = nil
				return td
			},
			wantErr: &taskdef.ContainerNotFoundError{Wanted: "", Available: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			td, untouched := tt.td(), tt.td()
			in, err := taskdef.RegisterInput(td, tt.tags, tt.container, newImage)
			g.Expect(td).To(Equal(untouched), "RegisterInput modified its input")

			if tt.wantErr != nil {
				g.Expect(in).To(BeNil())
				var cnf *taskdef.ContainerNotFoundError
				g.Expect(errors.As(err, &cnf)).To(BeTrue(), "error %v (%T)", err, err)
				g.Expect(cnf).To(Equal(tt.wantErr))
				for _, name := range tt.wantErr.Available {
					g.Expect(err.Error()).To(ContainSubstring(name))
				}
				if tt.container != "" {
					g.Expect(err.Error()).To(ContainSubstring(`"` + tt.container + `"`))
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			var images []string
			for _, c := range in.ContainerDefinitions {
				images = append(images, aws.ToString(c.Image))
			}
			g.Expect(images).To(Equal(tt.wantImages))
			g.Expect(in.Tags).To(Equal(tt.wantTags))

			// Apart from the image, the containers are the original ones.
			for i := range in.ContainerDefinitions {
				got, want := in.ContainerDefinitions[i], untouched.ContainerDefinitions[i]
				got.Image, want.Image = nil, nil
				g.Expect(got).To(Equal(want))
			}
			g.Expect(in.Family).To(Equal(untouched.Family))

			// Changing the input afterwards leaves the task definition alone.
			for i := range in.ContainerDefinitions {
				in.ContainerDefinitions[i].Image = aws.String("changed")
				in.ContainerDefinitions[i].Name = aws.String("changed")
			}
			g.Expect(td).To(Equal(untouched), "the input shares container definitions with the task definition")
		})
	}
}

func TestContainerNotFoundErrorMessage(t *testing.T) {
	g := NewWithT(t)
	err := &taskdef.ContainerNotFoundError{Available: []string{"otel", "web"}}
	g.Expect(err.Error()).To(ContainSubstring("2 containers (otel, web)"))
	err = &taskdef.ContainerNotFoundError{Wanted: "api", Available: []string{"otel", "web"}}
	g.Expect(err.Error()).To(ContainSubstring(`container "api" is not in the task definition (it has: otel, web)`))
}

func TestImage(t *testing.T) {
	tests := []struct {
		name      string
		td        *types.TaskDefinition
		container string
		want      string
		wantErr   bool
	}{
		{name: "named", td: richTaskDefinition(), container: "otel", want: sidecarImage},
		{name: "only container", td: singleContainer(), want: webImage},
		{name: "ambiguous", td: richTaskDefinition(), wantErr: true},
		{name: "unknown", td: richTaskDefinition(), container: "api", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := taskdef.Image(tt.td, tt.container)
			if tt.wantErr {
				var cnf *taskdef.ContainerNotFoundError
				g.Expect(errors.As(err, &cnf)).To(BeTrue())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestEquivalent(t *testing.T) {
	register := func(td *types.TaskDefinition, tags []types.Tag, container, image string) *ecs.RegisterTaskDefinitionInput {
		in, err := taskdef.RegisterInput(td, tags, container, image)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	modified := func(f func(*types.TaskDefinition)) *types.TaskDefinition {
		td := richTaskDefinition()
		f(td)
		return td
	}
	base := register(richTaskDefinition(), tags, "web", newImage)
	tests := []struct {
		name  string
		other *ecs.RegisterTaskDefinitionInput
		want  bool
	}{
		{name: "same input", other: base, want: true},
		{name: "built again from an equal task definition", other: register(richTaskDefinition(), tags, "web", newImage), want: true},
		{name: "from a later revision of the same definition", other: register(modified(func(td *types.TaskDefinition) {
			td.TaskDefinitionArn = aws.String("arn:aws:ecs:us-east-1:123456789012:task-definition/shop-api:42")
			td.Revision = 42
			td.RegisteredAt = aws.Time(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
		}), tags, "web", newImage), want: true},
		{name: "from a definition already running the image", other: register(modified(func(td *types.TaskDefinition) {
			td.ContainerDefinitions[0].Image = aws.String(newImage)
		}), tags, "web", newImage), want: true},
		{name: "other image", other: register(richTaskDefinition(), tags, "web", webImage), want: false},
		{name: "image set on the other container", other: register(richTaskDefinition(), tags, "otel", newImage), want: false},
		{name: "no tags", other: register(richTaskDefinition(), nil, "web", newImage), want: false},
		{name: "other tag value", other: register(richTaskDefinition(), []types.Tag{
			{Key: aws.String("team"), Value: aws.String("checkout")}, tags[1],
		}, "web", newImage), want: false},
		{name: "other environment variable", other: register(modified(func(td *types.TaskDefinition) {
			td.ContainerDefinitions[0].Environment[1].Value = aws.String("debug")
		}), tags, "web", newImage), want: false},
		{name: "other memory", other: register(modified(func(td *types.TaskDefinition) {
			td.Memory = aws.String("4096")
		}), tags, "web", newImage), want: false},
		{name: "other task role", other: register(modified(func(td *types.TaskDefinition) {
			td.TaskRoleArn = aws.String("arn:aws:iam::123456789012:role/other")
		}), tags, "web", newImage), want: false},
		{name: "other isolation mode", other: register(modified(func(td *types.TaskDefinition) {
			td.TrustedExecutionConfiguration = nil
		}), tags, "web", newImage), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(taskdef.Equivalent(base, tt.other)).To(Equal(tt.want))
			g.Expect(taskdef.Equivalent(tt.other, base)).To(Equal(tt.want))
		})
	}
	t.Run("tags nil and empty", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(taskdef.Equivalent(register(richTaskDefinition(), nil, "web", newImage),
			register(richTaskDefinition(), []types.Tag{}, "web", newImage))).To(BeTrue())
	})
}

func BenchmarkRegisterInput(b *testing.B) {
	td := richTaskDefinition()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := taskdef.RegisterInput(td, tags, "otel", newImage); err != nil {
			b.Fatal(err)
		}
	}
}
