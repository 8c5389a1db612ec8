package controllers

import (
	"fmt"
	"strings"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
)

// ServiceKey names one ECS service however spec.ecs spells it: by short names, by a
// new-format service ARN (…:service/<cluster>/<name>), by an old-format one
// (…:service/<name>, the cluster from spec.ecs.cluster) or by a cluster ARN. Account is the
// account of an ARN in spec.ecs.service or spec.ecs.cluster, else that of spec.ecs.roleARN,
// else "" (the controller's own account).
type ServiceKey struct {
	Region, Account, Cluster, Service string
}

// String is the key as the field index holds it.
func (k ServiceKey) String() string {
	return k.Region + "/" + k.Account + "/" + k.Cluster + "/" + k.Service
}

// ecsARN is a parsed ECS cluster or service ARN. Cluster is "" in an old-format service ARN.
type ecsARN struct {
	region, account, cluster, name string
}

// parseECSARN parses arn:<partition>:ecs:<region>:<account>:<kind>/... for kind "cluster"
// (cluster/<name>) or "service" (service/<name> or service/<cluster>/<name>).
func parseECSARN(arn, kind string) (ecsARN, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[2] != "ecs" || parts[3] == "" || parts[4] == "" {
		return ecsARN{}, fmt.Errorf("%q is not an ECS %s ARN (arn:aws:ecs:<region>:<account>:%s/…)", arn, kind, kind)
	}
	a := ecsARN{region: parts[3], account: parts[4]}
	res := strings.Split(parts[5], "/")
	switch {
	case res[0] != kind:
		return ecsARN{}, fmt.Errorf("%q is not an ECS %s ARN: its resource is %q", arn, kind, parts[5])
	case kind == "cluster" && len(res) == 2 && res[1] != "":
		a.name = res[1]
	case kind == "service" && len(res) == 2 && res[1] != "":
		a.name = res[1]
	case kind == "service" && len(res) == 3 && res[1] != "" && res[2] != "":
		a.cluster, a.name = res[1], res[2]
	default:
		return ecsARN{}, fmt.Errorf("%q is not an ECS %s ARN: its resource %q has no name", arn, kind, parts[5])
	}
	return a, nil
}

// KeyOf returns the service spec.ecs names. It fails, saying what to fix, when spec.ecs
// contradicts itself: an ARN in another Region than spec.ecs.region, an ARN in another
// account than spec.ecs.roleARN or than the other ARN, a service ARN of another cluster than
// spec.ecs.cluster, or a malformed ARN.
func KeyOf(t deployv1.ECSTarget) (ServiceKey, error) {
	k := ServiceKey{Region: t.Region, Cluster: t.Cluster, Service: t.Service}
	var arnAccount, arnField string
	takeAccount := func(field, account string) error {
		if arnAccount != "" && arnAccount != account {
			return fmt.Errorf("spec.ecs.%s is in account %s but spec.ecs.%s is in account %s: name one service", field, account, arnField, arnAccount)
		}
		arnAccount, arnField = account, field
		return nil
	}
	if strings.HasPrefix(t.Cluster, "arn:") {
		a, err := parseECSARN(t.Cluster, "cluster")
		if err != nil {
			return ServiceKey{}, fmt.Errorf("spec.ecs.cluster: %w", err)
		}
		if a.region != t.Region {
			return ServiceKey{}, fmt.Errorf("spec.ecs.cluster %s is in Region %s but spec.ecs.region is %s", t.Cluster, a.region, t.Region)
		}
		k.Cluster = a.name
		_ = takeAccount("cluster", a.account)
	}
	if strings.HasPrefix(t.Service, "arn:") {
		a, err := parseECSARN(t.Service, "service")
		if err != nil {
			return ServiceKey{}, fmt.Errorf("spec.ecs.service: %w", err)
		}
		if a.region != t.Region {
			return ServiceKey{}, fmt.Errorf("spec.ecs.service %s is in Region %s but spec.ecs.region is %s", t.Service, a.region, t.Region)
		}
		if a.cluster != "" && a.cluster != k.Cluster {
			return ServiceKey{}, fmt.Errorf("spec.ecs.service %s is in cluster %s but spec.ecs.cluster names %s", t.Service, a.cluster, k.Cluster)
		}
		if err := takeAccount("service", a.account); err != nil {
			return ServiceKey{}, err
		}
		k.Service = a.name
	}
	role := awsecs.AccountOf(t.RoleARN)
	switch {
	case arnAccount == "":
		k.Account = role
	case role != "" && role != arnAccount:
		return ServiceKey{}, fmt.Errorf("spec.ecs.%s is in account %s but spec.ecs.roleARN is a role in account %s: the role must be in the service's account",
			arnField, arnAccount, role)
	default:
		k.Account = arnAccount
	}
	return k, nil
}

// serviceMatches reports whether serviceARN, the service of an ECS event (new or old
// format), names the Environment's service. An Environment in the controller's own account
// (no account in spec.ecs) matches any account; an old-format ARN matches any cluster.
func serviceMatches(serviceARN string, t deployv1.ECSTarget) bool {
	a, err := parseECSARN(serviceARN, "service")
	if err != nil {
		return false
	}
	k, err := KeyOf(t)
	if err != nil {
		return false
	}
	return a.region == k.Region && (k.Account == "" || k.Account == a.account) &&
		(a.cluster == "" || a.cluster == k.Cluster) && a.name == k.Service
}
