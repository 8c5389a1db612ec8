package test

import (
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// TestEventBridgeTemplateMatchesTheReceiver checks that docs/eventbridge.yaml (CloudFormation)
// sends what the receiver takes: its API key header, its events routes, and the event kinds it
// handles.
func TestEventBridgeTemplateMatchesTheReceiver(t *testing.T) {
	g := NewWithT(t)
	raw, err := os.ReadFile(filepath.Join("..", "docs", "eventbridge.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	doc, err := yaml.Parse(string(raw))
	g.Expect(err).NotTo(HaveOccurred())
	get := func(path ...string) *yaml.RNode {
		n, err := doc.Pipe(yaml.Lookup(path...))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(n).NotTo(BeNil(), "%v", path)
		return n
	}
	str := func(path ...string) string { return yaml.GetValue(get(path...)) }

	g.Expect(str("Resources", "Connection", "Properties", "AuthorizationType")).To(Equal("API_KEY"))
	g.Expect(str("Resources", "Connection", "Properties", "AuthParameters", "ApiKeyAuthParameters", "ApiKeyName")).To(Equal(receiver.APIKeyHeader))
	endpoint := get("Resources", "ApiDestination", "Properties", "InvocationEndpoint").MustString()
	g.Expect(endpoint).To(And(
		ContainSubstring("${ReceiverUrl}/v1/namespaces/${Namespace}/events"),
		ContainSubstring("${ReceiverUrl}"+receiver.EventsPath+`"`),
	))
	for rule, kind := range map[string]receiver.EventKind{"CodeBuildRule": receiver.CodeBuildStateChange, "EcrRule": receiver.ECRImageAction,
		"EcsDeploymentRule": controllers.ECSDeploymentStateChange, "EcsHookRule": controllers.ECSHookStateChange} {
		pattern := []string{"Resources", rule, "Properties", "EventPattern"}
		g.Expect(get(append(pattern, "source")...).MustString()).To(ContainSubstring(kind.Source), rule)
		g.Expect(get(append(pattern, "detail-type")...).MustString()).To(ContainSubstring(kind.DetailType), rule)
		g.Expect(get("Resources", rule, "Properties", "Targets").MustString()).To(And(
			ContainSubstring("RetryPolicy"), ContainSubstring("DeadLetterConfig")), rule)
	}
}
