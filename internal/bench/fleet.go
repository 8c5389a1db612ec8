package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
)

// registry is the ECR registry of every image of the benchmark.
const registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

func imageRef(repo, tag string) string { return registry + "/" + repo + ":" + tag }

// envSpec is one Environment and its ECS service.
type envSpec struct {
	Name, App, Cluster, Service string
	Account                     string // AWS account of the service
	RoleARN                     string // role to assume in Account; "" for the simulator's default account
	Pinned                      bool
}

// key identifies the Environment's service across accounts.
func (e envSpec) key() string { return serviceKey(e.Account, e.Cluster, e.Service) }

func serviceKey(account, cluster, service string) string {
	return account + "/" + cluster + "/" + service
}

// defaultAccount is the simulator's default account: the one unsigned and non-assumed-role
// calls act in.
const defaultAccount = "123456789012"

// accountID is the k-th account of a fleet spread over more than one.
func accountID(k int) string { return fmt.Sprintf("2100000%05d", k) }

// roleARN is the role autodeploy and the cron assume in account.
func roleARN(account string) string { return "arn:aws:iam::" + account + ":role/autodeploy-bench" }

// fleet is N services, grouped into applications of envsPerApp Environments each.
type fleet struct {
	Envs      []envSpec
	Apps      []string
	byApp     map[string][]int
	byService map[string]int // account/cluster/service -> index
}

func (f *fleet) pinned() int {
	n := 0
	for _, e := range f.Envs {
		if e.Pinned {
			n++
		}
	}
	return n
}

func (f *fleet) unpinnedOf(app string) []int {
	var out []int
	for _, i := range f.byApp[app] {
		if !f.Envs[i].Pinned {
			out = append(out, i)
		}
	}
	return out
}

// newFleet builds n Environments: applications of envsPerApp Environments (like a
// staging/prod fan-out), spread over clusters; a fraction pinned is pinned (at least one
// Environment of each application stays unpinned). With more than one account, applications
// are dealt out over them round-robin and every service is reached through a role in its
// account; with one, everything is in the simulator's default account.
func newFleet(n, envsPerApp, clusters, accounts int, pinned float64, rng *rand.Rand) *fleet {
	f := &fleet{byApp: map[string][]int{}, byService: map[string]int{}}
	for i := 0; i < n; i++ {
		a, j := i/envsPerApp, i%envsPerApp
		app := fmt.Sprintf("app-%05d", a)
		acct, role := defaultAccount, ""
		if accounts > 1 {
			acct = accountID(a % accounts)
			role = roleARN(acct)
		}
		if j == 0 {
			f.Apps = append(f.Apps, app)
		}
		e := envSpec{
			Name:    fmt.Sprintf("%s-e%02d", app, j),
			App:     app,
			Cluster: fmt.Sprintf("cluster-%d", j%clusters),
			Service: fmt.Sprintf("%s-e%02d", app, j),
			Account: acct,
			RoleARN: role,
			Pinned:  j > 0 && rng.Float64() < pinned,
		}
		f.byApp[app] = append(f.byApp[app], i)
		f.byService[e.key()] = i
		f.Envs = append(f.Envs, e)
	}
	return f
}

// accounts returns the fleet's accounts, in order of first appearance.
func (f *fleet) accounts() []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range f.Envs {
		if !seen[e.Account] {
			seen[e.Account] = true
			out = append(out, e.Account)
		}
	}
	return out
}

// pushImage records a pushed image in the application's ECR repository (not an API call).
func (f *fleet) pushImage(sim *ecssim.Server, app, tag string) error {
	return sim.Account(f.Envs[f.byApp[app][0]].Account).PushImage(app, tag, "")
}

// Initial images: every service runs v1 (the newest image in ECR), except pinned ones, which
// were rolled back to v0 and pinned there.
const (
	tagOld     = "v0"
	tagCurrent = "v1"
	container  = "web"
)

func (e envSpec) initialImage() string {
	if e.Pinned {
		return imageRef(e.App, tagOld)
	}
	return imageRef(e.App, tagCurrent)
}

// seed creates the clusters, task definitions, services and ECR images of the fleet in sim.
func (f *fleet) seed(sim *ecssim.Server) error {
	for _, app := range f.Apps {
		if err := f.pushImage(sim, app, tagOld); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Millisecond) // v1 is strictly newer in imagePushedAt
	for _, app := range f.Apps {
		if err := f.pushImage(sim, app, tagCurrent); err != nil {
			return err
		}
	}
	for _, e := range f.Envs {
		acct := sim.Account(e.Account)
		if err := acct.SeedCluster(e.Cluster); err != nil {
			return err
		}
		td, err := json.Marshal(taskDefinition(e))
		if err != nil {
			return err
		}
		if _, err := acct.SeedTaskDefinition(td); err != nil {
			return err
		}
		if err := acct.SeedService(e.Cluster, e.Service, e.Service, 2); err != nil {
			return err
		}
	}
	return nil
}

func taskDefinition(e envSpec) map[string]any {
	return map[string]any{
		"family":                  e.Service,
		"taskRoleArn":             "arn:aws:iam::" + e.Account + ":role/" + e.App + "-task",
		"executionRoleArn":        "arn:aws:iam::" + e.Account + ":role/ecsTaskExecutionRole",
		"networkMode":             "awsvpc",
		"requiresCompatibilities": []string{"FARGATE"},
		"cpu":                     "256",
		"memory":                  "512",
		"containerDefinitions": []any{
			map[string]any{
				"name":         container,
				"image":        e.initialImage(),
				"essential":    true,
				"portMappings": []any{map[string]any{"containerPort": 8080, "protocol": "tcp"}},
				"environment":  []any{map[string]any{"name": "ENV", "value": e.Name}},
				"logConfiguration": map[string]any{"logDriver": "awslogs", "options": map[string]any{
					"awslogs-group": "/ecs/" + e.Service, "awslogs-region": "us-east-1", "awslogs-stream-prefix": "web"}},
			},
			map[string]any{
				"name":                  "log-router",
				"image":                 "public.ecr.aws/aws-observability/aws-for-fluent-bit:2.32.0",
				"essential":             false,
				"firelensConfiguration": map[string]any{"type": "fluentbit"},
			},
		},
		"tags": []any{map[string]any{"key": "app", "value": e.App}},
	}
}

// build is one build of the workload.
type build struct {
	At     time.Duration // simulated time after the workload started
	App    string
	Number int64
	Image  string
}

// workload returns the builds of one simulated hour: each application gets a build in every
// interval, at a random offset within it.
func workload(f *fleet, hour, interval time.Duration, rng *rand.Rand) []build {
	var out []build
	for _, app := range f.Apps {
		n := int64(2)
		for start := time.Duration(0); start < hour; start += interval {
			at := start + time.Duration(rng.Int64N(int64(interval)))
			out = append(out, build{At: at, App: app, Number: n, Image: imageRef(app, fmt.Sprintf("b%d", n))})
			n++
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}
