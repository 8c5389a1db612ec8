package cli

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

// TestApprovalText: the approval column reads who approved and when from the typed
// status.history[].approval of a deploy.
func TestApprovalText(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 11, 27, 9, 30, 0, 0, time.FixedZone("CET", 3600)))
	cases := []struct {
		name string
		a    *deployv1.Approval
		want string
	}{
		{"none", nil, ""},
		{"who and when", &deployv1.Approval{Build: 144, By: "alice", At: &at}, "alice 2026-11-27 08:30Z"},
		{"who", &deployv1.Approval{Build: 144, By: "bob"}, "bob"},
		{"who unknown", &deployv1.Approval{Build: 144, At: &at}, "approved 2026-11-27 08:30Z"},
		{"nothing known", &deployv1.Approval{Build: 144}, "approved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(approvalText(tc.a)).To(Equal(tc.want))
		})
	}
}

// TestGitOpsSign: field managers, labels and annotations of GitOps controllers are
// recognised; kubectl's own writes and ordinary labels are not.
func TestGitOpsSign(t *testing.T) {
	env := func(manager string, labels, annotations map[string]string) *deployv1.Environment {
		e := &deployv1.Environment{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}}
		if manager != "" {
			e.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl-client-side-apply"}, {Manager: manager}}
		}
		return e
	}
	cases := []struct {
		name string
		env  *deployv1.Environment
		want string
	}{
		{"kubectl", env("kubectl-edit", map[string]string{"team": "shop"}, nil), ""},
		{"argo cd", env("argocd-application-controller", nil, nil), "field manager argocd-application-controller"},
		{"flux", env("kustomize-controller", nil, nil), "field manager kustomize-controller"},
		{"helm-controller", env("helm-controller", nil, nil), "field manager helm-controller"},
		{"argo cd tracking annotation", env("", nil, map[string]string{"argocd.argoproj.io/tracking-id": "shop:deploy.autodeploy.dev/Environment:shop/prod"}), "annotation argocd.argoproj.io/tracking-id"},
		{"argo cd tracking label", env("", map[string]string{"app.kubernetes.io/instance": "shop"}, nil), "label app.kubernetes.io/instance=shop"},
		{"flux label", env("", map[string]string{"kustomize.toolkit.fluxcd.io/name": "apps"}, nil), "label kustomize.toolkit.fluxcd.io/name"},
		{"managed-by", env("", map[string]string{"app.kubernetes.io/managed-by": "Flux"}, nil), "label app.kubernetes.io/managed-by=Flux"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(GitOpsSign(tc.env)).To(Equal(tc.want))
		})
	}
}

func TestNameFor(t *testing.T) {
	g := NewWithT(t)
	g.Expect(NameFor("/usr/local/bin/kubectl-autodeploy")).To(Equal("kubectl autodeploy"))
	g.Expect(NameFor("kubectl-autodeploy.exe")).To(Equal("kubectl autodeploy"))
	g.Expect(NameFor("./autodeployctl")).To(Equal("autodeployctl"))
}
