package ecssim

import (
	"slices"
)

// Deployment controller types (service.deploymentController.type).
const (
	ControllerECS        = "ECS"
	ControllerCodeDeploy = "CODE_DEPLOY"
	ControllerExternal   = "EXTERNAL"
)

var controllerTypes = []string{ControllerECS, ControllerCodeDeploy, ControllerExternal}

// validateDeploymentController checks the deploymentController of a
// CreateService or UpdateService request, if it has one.
func validateDeploymentController(raw map[string]any) error {
	v, ok := raw["deploymentController"]
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return errInvalidParameter("deploymentController must be an object.")
	}
	t, _ := m["type"].(string)
	if !slices.Contains(controllerTypes, t) {
		return errInvalidParameter("deploymentController.type must be one of ECS, CODE_DEPLOY, EXTERNAL; got %q.", t)
	}
	return nil
}

// controller returns the service's deployment controller type.
func (svc *service) controller() string {
	m, _ := svc.extra["deploymentController"].(map[string]any)
	if t, _ := m["type"].(string); t != "" {
		return t
	}
	return ControllerECS
}

// checkTaskDefinitionUpdate rejects an UpdateService that names a task
// definition on a service whose deployments ECS does not run itself. Real
// ECS answers InvalidParameterException with this message for CODE_DEPLOY
// whenever the request carries a taskDefinition, also an unchanged one (seen
// in the wild through CloudFormation, which always sends it). For EXTERNAL
// the wording is the simulator's own: deployments go through task sets.
func (svc *service) checkTaskDefinitionUpdate(reqHasTaskDefinition bool) error {
	if !reqHasTaskDefinition {
		return nil
	}
	switch svc.controller() {
	case ControllerCodeDeploy:
		return errInvalidParameter("Unable to update task definition on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment.")
	case ControllerExternal:
		return errInvalidParameter("Unable to update task definition on services with an EXTERNAL deployment controller. Use task sets (CreateTaskSet, UpdateServicePrimaryTaskSet) to deploy a new task definition.")
	}
	return nil
}

// classicLB reports whether the service is behind a Classic Load Balancer:
// a loadBalancers entry names a loadBalancerName and no targetGroupArn.
// ECS reports no rolloutState for such services and sends no "ECS
// Deployment State Change" events for them.
func (svc *service) classicLB() bool {
	lbs, _ := svc.extra["loadBalancers"].([]any)
	for _, lb := range lbs {
		m, _ := lb.(map[string]any)
		name, _ := m["loadBalancerName"].(string)
		tg, _ := m["targetGroupArn"].(string)
		if name != "" && tg == "" {
			return true
		}
	}
	return false
}
