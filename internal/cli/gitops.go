package cli

import (
	"fmt"
	"sort"
	"strings"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// gitOpsManagers are substrings of the field managers of GitOps controllers (Argo CD's
// argocd-controller and argocd-application-controller, Flux's kustomize-controller and
// helm-controller, Rancher Fleet's fleet-agent).
var gitOpsManagers = []string{"argocd", "argo-cd", "kustomize-controller", "helm-controller", "flux", "fleet-agent", "gitops"}

// gitOpsLabelPrefixes are label and annotation prefixes that GitOps controllers set on what
// they apply.
var gitOpsLabelPrefixes = []string{"argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/", "fleet.cattle.io/"}

// GitOpsSign returns why env looks managed by a GitOps controller (a field manager, a label
// or an annotation), or "" when nothing says so.
func GitOpsSign(env *deployv1.Environment) string {
	for _, mf := range env.ManagedFields {
		m := strings.ToLower(mf.Manager)
		for _, g := range gitOpsManagers {
			if strings.Contains(m, g) {
				return fmt.Sprintf("field manager %s", mf.Manager)
			}
		}
	}
	for _, kind := range []struct {
		what string
		m    map[string]string
	}{{"label", env.Labels}, {"annotation", env.Annotations}} {
		keys := make([]string, 0, len(kind.m))
		for k := range kind.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, p := range gitOpsLabelPrefixes {
				if strings.HasPrefix(k, p) {
					return fmt.Sprintf("%s %s", kind.what, k)
				}
			}
		}
	}
	// Argo CD's tracking label (the default before Argo CD 3), and app.kubernetes.io/managed-by
	// naming a GitOps tool.
	if v, ok := env.Labels["app.kubernetes.io/instance"]; ok {
		return fmt.Sprintf("label app.kubernetes.io/instance=%s", v)
	}
	if v := strings.ToLower(env.Labels["app.kubernetes.io/managed-by"]); v != "" {
		for _, g := range gitOpsManagers {
			if strings.Contains(v, g) {
				return fmt.Sprintf("label app.kubernetes.io/managed-by=%s", env.Labels["app.kubernetes.io/managed-by"])
			}
		}
	}
	return ""
}

// warnGitOps warns, on stderr, that a change to the spec of a GitOps-managed Environment
// belongs in Git.
func (r *root) warnGitOps(env *deployv1.Environment, what string) {
	sign := GitOpsSign(env)
	if sign == "" {
		return
	}
	fmt.Fprintf(r.errOut(), "Warning: Environment %s looks managed by GitOps (%s): the next sync may undo this %s; make the %s in Git (spec.pinnedImage or spec.pinnedImages).\n",
		r.envName(env), sign, what, what)
}
