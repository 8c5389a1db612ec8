package controllers

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
)

func target(cluster, service, role string) deployv1.ECSTarget {
	return deployv1.ECSTarget{Region: "us-east-1", Cluster: cluster, Service: service, RoleARN: role}
}

// Every spelling of one service has one key; contradictions are errors naming the fields.
func TestKeyOfNormalizesEverySpelling(t *testing.T) {
	g := NewWithT(t)
	const acct = "111122223333"
	role := "arn:aws:iam::" + acct + ":role/deployer"
	want := ServiceKey{Region: "us-east-1", Account: acct, Cluster: "prod", Service: "shop-api"}
	for _, tg := range []deployv1.ECSTarget{
		target("prod", "shop-api", role),
		target("prod", "arn:aws:ecs:us-east-1:"+acct+":service/prod/shop-api", ""),
		target("prod", "arn:aws:ecs:us-east-1:"+acct+":service/shop-api", role),
		target("arn:aws:ecs:us-east-1:"+acct+":cluster/prod", "shop-api", ""),
		target("arn:aws:ecs:us-east-1:"+acct+":cluster/prod", "arn:aws:ecs:us-east-1:"+acct+":service/shop-api", role),
	} {
		k, err := KeyOf(tg)
		g.Expect(err).NotTo(HaveOccurred(), "%+v", tg)
		g.Expect(k).To(Equal(want), "%+v", tg)
	}
	own, err := KeyOf(target("prod", "shop-api", ""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(own).To(Equal(ServiceKey{Region: "us-east-1", Cluster: "prod", Service: "shop-api"}), "the controller's own account is \"\"")

	for _, c := range []struct {
		tg  deployv1.ECSTarget
		msg string
	}{
		{target("prod", "arn:aws:ecs:eu-west-1:"+acct+":service/prod/shop-api", ""), "is in Region eu-west-1 but spec.ecs.region is us-east-1"},
		{target("arn:aws:ecs:eu-west-1:"+acct+":cluster/prod", "shop-api", ""), "spec.ecs.cluster arn:aws:ecs:eu-west-1"},
		{target("prod", "arn:aws:ecs:us-east-1:"+acct+":service/staging/shop-api", ""), "is in cluster staging but spec.ecs.cluster names prod"},
		{target("prod", "arn:aws:ecs:us-east-1:999999999999:service/prod/shop-api", role), "spec.ecs.roleARN is a role in account " + acct},
		{target("arn:aws:ecs:us-east-1:999999999999:cluster/prod", "arn:aws:ecs:us-east-1:"+acct+":service/shop-api", ""), "spec.ecs.service is in account " + acct + " but spec.ecs.cluster is in account 999999999999"},
		{target("prod", "arn:aws:ecs:us-east-1:"+acct+":task-definition/shop-api:3", ""), "is not an ECS service ARN"},
		{target("prod", "arn:aws:ecs:us-east-1:"+acct+":service/", ""), "has no name"},
		{target("prod", "arn:aws:s3:::bucket", ""), "is not an ECS service ARN"},
	} {
		_, err := KeyOf(c.tg)
		g.Expect(err).To(MatchError(ContainSubstring(c.msg)), "%+v", c.tg)
	}
}

// ECS events name services by new- and old-format ARNs; both match, nothing else does.
func TestServiceMatchesOldAndNewFormatARNs(t *testing.T) {
	g := NewWithT(t)
	const acct = "111122223333"
	newARN := "arn:aws:ecs:us-east-1:" + acct + ":service/prod/shop-api"
	oldARN := "arn:aws:ecs:us-east-1:" + acct + ":service/shop-api"
	for _, tg := range []deployv1.ECSTarget{
		target("prod", "shop-api", ""),
		target("prod", "shop-api", "arn:aws:iam::"+acct+":role/deployer"),
		target("prod", oldARN, ""),
		target("prod", newARN, ""),
		target("arn:aws:ecs:us-east-1:"+acct+":cluster/prod", "shop-api", ""),
	} {
		g.Expect(serviceMatches(newARN, tg)).To(BeTrue(), "new format, %+v", tg)
		g.Expect(serviceMatches(oldARN, tg)).To(BeTrue(), "old format, %+v", tg)
	}
	g.Expect(serviceMatches(newARN, target("staging", "shop-api", ""))).To(BeFalse(), "other cluster")
	g.Expect(serviceMatches(oldARN, target("prod", "shop-web", ""))).To(BeFalse(), "other service")
	g.Expect(serviceMatches(newARN, target("prod", "shop-api", "arn:aws:iam::999999999999:role/x"))).To(BeFalse(), "other account")
	g.Expect(serviceMatches("arn:aws:ecs:eu-west-1:"+acct+":service/prod/shop-api", target("prod", "shop-api", ""))).To(BeFalse(), "other Region")
	g.Expect(serviceMatches("not-an-arn", target("prod", "shop-api", ""))).To(BeFalse())
}

// A ClientException from RegisterTaskDefinition is permanent, except ECS's answer to
// concurrent registrations of the family.
func TestRegisterClientExceptionIsPermanentUnlessConcurrent(t *testing.T) {
	g := NewWithT(t)
	tg := target("prod", "shop-api", "")
	var de *deployError

	invalid := registerFailed(&types.ClientException{Message: aws.String("Container.image contains invalid characters.")}, "bad image!")
	g.Expect(errors.As(classify(invalid, tg), &de)).To(BeTrue())
	g.Expect(de.reason).To(Equal(deployv1.ReasonInvalidTaskDefinition))
	g.Expect(de.message).To(ContainSubstring("Container.image contains invalid characters."))
	g.Expect(de.message).To(ContainSubstring("bad image!"))

	concurrent := registerFailed(&types.ClientException{Message: aws.String("Too many concurrent attempts to create a new revision of the specified family.")}, "img")
	g.Expect(errors.As(classify(concurrent, tg), &de)).To(BeFalse(), "concurrent registrations clear by themselves")

	server := registerFailed(&types.ServerException{Message: aws.String("boom")}, "img")
	g.Expect(errors.As(classify(server, tg), &de)).To(BeFalse())
}

// Only a pending deploy that may be the event's, still being recorded, asks for a redelivery.
func TestInFlightPendingDeploys(t *testing.T) {
	g := NewWithT(t)
	started := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	obs := RolloutObservation{DeploymentID: "ecs-svc/1", At: started.Add(time.Second)}
	env := &deployv1.Environment{}
	p := &deployv1.Deploy{StartedAt: metav1.NewTime(started)}
	g.Expect(inFlight(env, p, obs)).To(BeTrue())

	stalled := p.DeepCopy()
	stalled.Result = deployv1.ResultStalled
	g.Expect(inFlight(env, stalled, obs)).To(BeFalse(), "a stalled deploy never reached the service")

	other := p.DeepCopy()
	other.DeploymentID = "ecs-svc/2"
	g.Expect(inFlight(env, other, obs)).To(BeFalse(), "another deployment's")

	old := obs
	old.At = started.Add(-2 * eventSkew)
	g.Expect(inFlight(env, p, old)).To(BeFalse(), "an event older than the deploy")

	held := env.DeepCopy()
	held.Status.Conditions = []metav1.Condition{{Type: deployv1.ReadyCondition, Status: metav1.ConditionFalse, Reason: deployv1.ReasonServiceConflict}}
	g.Expect(inFlight(held, p, obs)).To(BeFalse(), "an Environment held off its service deploys nothing")
}
