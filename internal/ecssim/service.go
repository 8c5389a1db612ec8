package ecssim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// Deployment statuses and rollout states.
const (
	DeploymentPrimary = "PRIMARY"
	DeploymentActive  = "ACTIVE"

	RolloutInProgress = "IN_PROGRESS"
	RolloutCompleted  = "COMPLETED"
	RolloutFailed     = "FAILED"
)

type cluster struct {
	name      string
	arn       string
	services  map[string]*service
	createdAt time.Time
}

type service struct {
	name           string
	arn            string
	cluster        *cluster
	status         string
	desiredCount   int
	taskDefinition string // full ARN of the PRIMARY deployment's task definition
	deployConfig   map[string]any
	extra          map[string]any // other Service fields, echoed as sent
	tags           []any
	deployments    []*deployment // newest first; deployments[0] is PRIMARY
	createdAt      time.Time
	sds            []*serviceDeployment // newest first
	revisions      []*serviceRevision
	// failNextRollback makes the next non-rolling rollback end ROLLBACK_FAILED.
	failNextRollback bool
}

type deployment struct {
	id             string
	status         string
	taskDefinition string
	launchType     string
	desired        int
	running        int
	pending        int
	failed         int
	rolloutState   string
	rolloutReason  string
	createdAt      time.Time
	updatedAt      time.Time
	completionTime time.Time // when an IN_PROGRESS deployment completes by itself
	sd             *serviceDeployment
}

// ServiceState is a snapshot of a simulated service.
type ServiceState struct {
	Cluster           string            `json:"cluster"`
	Name              string            `json:"serviceName"`
	ARN               string            `json:"serviceArn"`
	Status            string            `json:"status"`
	DesiredCount      int               `json:"desiredCount"`
	RunningCount      int               `json:"runningCount"`
	PendingCount      int               `json:"pendingCount"`
	TaskDefinitionARN string            `json:"taskDefinition"`
	Deployments       []DeploymentState `json:"deployments"` // newest first
	// ServiceDeployments are the service's deployments as
	// ListServiceDeployments and DescribeServiceDeployments report them,
	// newest first.
	ServiceDeployments []ServiceDeploymentState `json:"serviceDeployments,omitempty"`
}

// Primary returns the PRIMARY deployment of the snapshot.
func (s ServiceState) Primary() (DeploymentState, bool) {
	for _, d := range s.Deployments {
		if d.Status == DeploymentPrimary {
			return d, true
		}
	}
	return DeploymentState{}, false
}

// DeploymentState is a snapshot of one deployment of a service.
type DeploymentState struct {
	ID                 string    `json:"id"`
	Status             string    `json:"status"`
	RolloutState       string    `json:"rolloutState"`
	RolloutStateReason string    `json:"rolloutStateReason"`
	TaskDefinition     string    `json:"taskDefinition"`
	DesiredCount       int       `json:"desiredCount"`
	RunningCount       int       `json:"runningCount"`
	PendingCount       int       `json:"pendingCount"`
	FailedTasks        int       `json:"failedTasks"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
	// ServiceDeploymentARN is the service deployment that made this
	// deployment (a circuit-breaker rollback shares the failed one's).
	ServiceDeploymentARN string `json:"serviceDeploymentArn,omitempty"`
}

// serviceManagedFields are CreateService/UpdateService request fields the
// simulator models itself; every other field is stored and echoed verbatim.
var serviceManagedFields = []string{
	"cluster", "service", "serviceName", "taskDefinition", "desiredCount", "clientToken",
	"deploymentConfiguration", "forceNewDeployment", "tags",
}

// deploymentFields are UpdateService fields whose change starts a new
// deployment, as in ECS.
var deploymentFields = []string{
	"networkConfiguration", "platformVersion", "capacityProviderStrategy", "loadBalancers",
	"serviceRegistries", "placementConstraints", "placementStrategy", "serviceConnectConfiguration",
	"volumeConfigurations", "vpcLatticeConfigurations",
}

// ---- clusters ----

// clusterLocked resolves a cluster name or ARN; "" means "default".
func (a *account) clusterLocked(ref string) (*cluster, error) {
	name := ref
	if name == "" {
		name = "default"
	}
	if strings.HasPrefix(name, "arn:") {
		var ok bool
		if name, ok = strings.CutPrefix(name, a.arn("cluster/")); !ok {
			return nil, errClusterNotFound()
		}
	}
	c, ok := a.clusters[name]
	if !ok {
		return nil, errClusterNotFound()
	}
	return c, nil
}

func (a *account) createClusterLocked(name string) (*cluster, error) {
	if name == "" {
		name = "default"
	}
	if !familyPattern.MatchString(name) {
		return nil, errInvalidParameter("Cluster name can have up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores.")
	}
	if c, ok := a.clusters[name]; ok {
		return c, nil // CreateCluster is idempotent
	}
	c := &cluster{name: name, arn: a.arn("cluster/" + name), services: map[string]*service{}, createdAt: a.now()}
	a.clusters[name] = c
	return c, nil
}

func (c *cluster) doc() map[string]any {
	active, running, pending := 0, 0, 0
	for _, svc := range c.services {
		if svc.status == statusActive {
			active++
		}
		r, p := svc.counts()
		running += r
		pending += p
	}
	return map[string]any{
		"clusterArn":                        c.arn,
		"clusterName":                       c.name,
		"status":                            statusActive,
		"registeredContainerInstancesCount": 0,
		"runningTasksCount":                 running,
		"pendingTasksCount":                 pending,
		"activeServicesCount":               active,
		"statistics":                        []any{},
		"tags":                              []any{},
		"settings":                          []any{map[string]any{"name": "containerInsights", "value": "disabled"}},
		"capacityProviders":                 []any{},
		"defaultCapacityProviderStrategy":   []any{},
	}
}

func (a *account) opCreateCluster(body []byte) (any, error) {
	var req struct {
		ClusterName string `json:"clusterName"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	c, err := a.createClusterLocked(req.ClusterName)
	if err != nil {
		return nil, err
	}
	return map[string]any{"cluster": c.doc()}, nil
}

func (a *account) opDescribeClusters(body []byte) (any, error) {
	var req struct {
		Clusters []string `json:"clusters"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if len(req.Clusters) == 0 {
		req.Clusters = []string{"default"}
	}
	if len(req.Clusters) > 100 {
		return nil, errInvalidParameter("Clusters cannot have more than 100 elements.")
	}
	clusters, failures := []any{}, []any{}
	for _, ref := range req.Clusters {
		c, err := a.clusterLocked(ref)
		if err != nil {
			arn := ref
			if !strings.HasPrefix(ref, "arn:") {
				arn = a.arn("cluster/" + ref)
			}
			failures = append(failures, map[string]any{"arn": arn, "reason": "MISSING"})
			continue
		}
		clusters = append(clusters, c.doc())
	}
	return map[string]any{"clusters": clusters, "failures": failures}, nil
}

// ---- services ----

// serviceName resolves a service name or ARN (old or new format) within c.
func (a *account) serviceName(c *cluster, ref string) (string, bool) {
	if !strings.HasPrefix(ref, "arn:") {
		return ref, ref != ""
	}
	rest, ok := strings.CutPrefix(ref, a.arn("service/"))
	if !ok {
		return "", false
	}
	if cl, name, ok := strings.Cut(rest, "/"); ok {
		return name, cl == c.name
	}
	return rest, true
}

func (a *account) serviceLocked(clusterRef, ref string) (*service, error) {
	c, err := a.clusterLocked(clusterRef)
	if err != nil {
		return nil, err
	}
	name, ok := a.serviceName(c, ref)
	if !ok {
		return nil, errServiceNotFound()
	}
	svc, ok := c.services[name]
	if !ok {
		return nil, errServiceNotFound()
	}
	return svc, nil
}

// resolveTaskDefLocked resolves the task definition of a service request to
// an ACTIVE revision.
func (a *account) resolveTaskDefLocked(ref string) (*taskDef, error) {
	td, ok := a.lookupTaskDefLocked(ref)
	if !ok {
		return nil, errClient("TaskDefinition not found.")
	}
	if td.status() != statusActive {
		return nil, errClient("TaskDefinition is inactive")
	}
	return td, nil
}

func (svc *service) primary() *deployment { return svc.deployments[0] }

func (svc *service) counts() (running, pending int) {
	for _, d := range svc.deployments {
		running += d.running
		pending += d.pending
	}
	return running, pending
}

func (svc *service) rollbackEnabled() bool {
	cb, _ := svc.deployConfig["deploymentCircuitBreaker"].(map[string]any)
	rb, _ := cb["rollback"].(bool)
	return rb
}

func defaultDeploymentConfiguration() map[string]any {
	return map[string]any{
		"deploymentCircuitBreaker": map[string]any{"enable": false, "rollback": false},
		"maximumPercent":           200,
		"minimumHealthyPercent":    100,
	}
}

// createServiceLocked implements CreateService for the wire and for seeding.
// The new service's single deployment completes at once; with emit, the
// IN_PROGRESS and COMPLETED deployment events are queued (seeding is silent).
func (a *account) createServiceLocked(body []byte, emit bool) (*service, error) {
	var req struct {
		Cluster        string `json:"cluster"`
		ServiceName    string `json:"serviceName"`
		TaskDefinition string `json:"taskDefinition"`
		DesiredCount   *int   `json:"desiredCount"`
		LaunchType     string `json:"launchType"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	raw, err := decodeRaw(body)
	if err != nil {
		return nil, err
	}
	if err := validateDeploymentController(raw); err != nil {
		return nil, err
	}
	if !familyPattern.MatchString(req.ServiceName) {
		return nil, errInvalidParameter("Service name can have up to 255 letters (uppercase and lowercase), numbers, hyphens, and underscores.")
	}
	c, err := a.clusterLocked(req.Cluster)
	if err != nil {
		return nil, err
	}
	if old, ok := c.services[req.ServiceName]; ok && old.status != statusInactive {
		return nil, errInvalidParameter("Creation of service was not idempotent.")
	}
	if req.TaskDefinition == "" {
		return nil, errInvalidParameter("TaskDefinition must be specified for a service using the ECS deployment controller.")
	}
	td, err := a.resolveTaskDefLocked(req.TaskDefinition)
	if err != nil {
		return nil, err
	}
	desired := 0
	if req.DesiredCount != nil {
		desired = *req.DesiredCount
	}
	if desired < 0 {
		return nil, errInvalidParameter("desiredCount must be greater than or equal to 0.")
	}
	deployConfig := defaultDeploymentConfiguration()
	if dc, ok := raw["deploymentConfiguration"].(map[string]any); ok {
		for k, v := range dc {
			deployConfig[k] = v
		}
	}
	if err := validateDeploymentConfiguration(deployConfig); err != nil {
		return nil, err
	}
	tags, _ := raw["tags"].([]any)
	extra := copyMap(raw)
	for _, f := range serviceManagedFields {
		delete(extra, f)
	}
	setDefault(extra, "deploymentController", map[string]any{"type": "ECS"})
	setDefault(extra, "schedulingStrategy", "REPLICA")
	setDefault(extra, "loadBalancers", []any{})
	setDefault(extra, "serviceRegistries", []any{})
	setDefault(extra, "placementConstraints", []any{})
	setDefault(extra, "placementStrategy", []any{})
	setDefault(extra, "propagateTags", "NONE")
	setDefault(extra, "enableECSManagedTags", false)
	setDefault(extra, "enableExecuteCommand", false)

	now := a.now()
	svc := &service{
		name:           req.ServiceName,
		arn:            a.serviceARN(c.name, req.ServiceName),
		cluster:        c,
		status:         statusActive,
		desiredCount:   desired,
		taskDefinition: td.arn,
		deployConfig:   deployConfig,
		extra:          extra,
		tags:           tags,
		createdAt:      now,
	}
	d := svc.newDeployment(td.arn, now)
	svc.deployments = []*deployment{d}
	c.services[svc.name] = svc
	a.trackDeploymentLocked(svc, d, nil, now)
	if emit {
		a.emitLocked(svc, d)
	}
	d.complete(now)
	d.sd.rollingDoneLocked(false, "", nil, now)
	if emit {
		a.emitLocked(svc, d)
	}
	return svc, nil
}

// newDeployment returns a PRIMARY IN_PROGRESS deployment of td; the caller
// links it into svc.deployments.
func (svc *service) newDeployment(td string, now time.Time) *deployment {
	id := fmt.Sprintf("ecs-svc/%d", rand.Int64N(8e18)+1e18) // 19 digits
	lt, _ := svc.extra["launchType"].(string)
	return &deployment{
		id:             id,
		status:         DeploymentPrimary,
		taskDefinition: td,
		launchType:     lt,
		desired:        svc.desiredCount,
		pending:        svc.desiredCount,
		rolloutState:   RolloutInProgress,
		rolloutReason:  "ECS deployment " + id + " in progress.",
		createdAt:      now,
		updatedAt:      now,
	}
}

func (d *deployment) complete(at time.Time) {
	d.running, d.pending = d.desired, 0
	d.rolloutState = RolloutCompleted
	d.rolloutReason = "ECS deployment " + d.id + " completed."
	d.updatedAt = at
}

// startDeploymentLocked makes a new PRIMARY deployment of td; the previous
// PRIMARY becomes ACTIVE.
func (a *account) startDeploymentLocked(svc *service, td string, now time.Time) {
	prev := svc.primary()
	for _, d := range svc.deployments {
		if d.status == DeploymentPrimary {
			d.status = DeploymentActive
			d.updatedAt = now
		}
	}
	d := svc.newDeployment(td, now)
	d.completionTime = now.Add(a.srv.rolloutDuration)
	svc.deployments = append([]*deployment{d}, svc.deployments...)
	svc.taskDefinition = td
	a.trackDeploymentLocked(svc, d, prev, now)
	a.emitLocked(svc, d)
}

// completeLocked completes the PRIMARY deployment at time at: its tasks are
// all running and every older deployment is gone.
func (a *account) completeLocked(svc *service, at time.Time) {
	p := svc.primary()
	p.complete(at)
	svc.deployments = []*deployment{p}
	p.sd.rollingDoneLocked(false, "", nil, at)
	a.emitLocked(svc, p)
}

// advanceLocked completes every IN_PROGRESS PRIMARY deployment whose rollout
// duration has passed at now and returns how many it completed.
func (a *account) advanceLocked(now time.Time) int {
	n := 0
	for _, c := range a.clusters {
		for _, svc := range c.services {
			n += a.advanceStrategiesLocked(svc, now)
			p := svc.primary()
			if p.rolloutState == RolloutInProgress && !p.sd.engineDriven() && !now.Before(p.completionTime) {
				a.completeLocked(svc, p.completionTime)
				n++
			}
		}
	}
	return n
}

func (a *account) opCreateService(body []byte) (any, error) {
	svc, err := a.createServiceLocked(body, true)
	if err != nil {
		return nil, err
	}
	return map[string]any{"service": a.serviceDoc(svc, false)}, nil
}

func (a *account) opDescribeServices(body []byte) (any, error) {
	var req struct {
		Cluster  string   `json:"cluster"`
		Services []string `json:"services"`
		Include  []string `json:"include"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	switch {
	case len(req.Services) == 0:
		return nil, errInvalidParameter("Services cannot be empty.")
	case len(req.Services) > 10:
		return nil, errInvalidParameter("Services cannot have more than 10 elements.")
	}
	c, err := a.clusterLocked(req.Cluster)
	if err != nil {
		return nil, err
	}
	a.described += len(req.Services)
	services, failures := []any{}, []any{}
	for _, ref := range req.Services {
		name, ok := a.serviceName(c, ref)
		svc := c.services[name]
		if !ok || svc == nil {
			arn := ref
			if !strings.HasPrefix(ref, "arn:") {
				arn = a.serviceARN(c.name, ref)
			}
			failures = append(failures, map[string]any{"arn": arn, "reason": "MISSING"})
			continue
		}
		services = append(services, a.serviceDoc(svc, hasTags(req.Include)))
	}
	return map[string]any{"services": services, "failures": failures}, nil
}

func (a *account) opUpdateService(body []byte) (any, error) {
	var req struct {
		Cluster            string  `json:"cluster"`
		Service            string  `json:"service"`
		TaskDefinition     *string `json:"taskDefinition"`
		DesiredCount       *int    `json:"desiredCount"`
		ForceNewDeployment bool    `json:"forceNewDeployment"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	raw, err := decodeRaw(body)
	if err != nil {
		return nil, err
	}
	svc, err := a.serviceLocked(req.Cluster, req.Service)
	if err != nil {
		return nil, err
	}
	if svc.status != statusActive {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "ServiceNotActiveException", Message: "Service was not ACTIVE."}
	}
	if err := svc.checkTaskDefinitionUpdate(req.TaskDefinition != nil); err != nil {
		return nil, err
	}
	if err := validateDeploymentController(raw); err != nil {
		return nil, err
	}
	tdARN := svc.taskDefinition
	if req.TaskDefinition != nil {
		td, err := a.resolveTaskDefLocked(*req.TaskDefinition)
		if err != nil {
			return nil, err
		}
		tdARN = td.arn
	}
	if req.DesiredCount != nil && *req.DesiredCount < 0 {
		return nil, errInvalidParameter("desiredCount must be greater than or equal to 0.")
	}

	if dc, ok := raw["deploymentConfiguration"].(map[string]any); ok {
		if err := validateDeploymentConfiguration(mergeConfig(svc.deployConfig, dc)); err != nil {
			return nil, err
		}
	}

	now := a.now()
	redeploy := req.ForceNewDeployment || tdARN != svc.taskDefinition
	if dc, ok := raw["deploymentConfiguration"].(map[string]any); ok {
		for k, v := range dc {
			svc.deployConfig[k] = v
		}
	}
	for k, v := range raw {
		if slices.Contains(serviceManagedFields, k) {
			continue
		}
		if slices.Contains(deploymentFields, k) && !reflect.DeepEqual(svc.extra[k], v) {
			redeploy = true
		}
		svc.extra[k] = v
	}
	if req.DesiredCount != nil {
		svc.desiredCount = *req.DesiredCount
		p := svc.primary()
		p.desired = svc.desiredCount
		if p.rolloutState == RolloutCompleted {
			p.running, p.pending = p.desired, 0
		} else if p.rolloutState == RolloutInProgress {
			p.pending = p.desired - p.running
		}
		p.updatedAt = now
	}
	if redeploy {
		a.startDeploymentLocked(svc, tdARN, now)
	}
	return map[string]any{"service": a.serviceDoc(svc, false)}, nil
}

func (a *account) opListServices(body []byte) (any, error) {
	var req struct {
		Cluster    string `json:"cluster"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	c, err := a.clusterLocked(req.Cluster)
	if err != nil {
		return nil, err
	}
	var arns []string
	for _, svc := range c.services {
		if svc.status != statusInactive {
			arns = append(arns, svc.arn)
		}
	}
	sort.Strings(arns)
	page, next, err := paginate(arns, req.MaxResults, req.NextToken)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"serviceArns": page}
	if next != "" {
		out["nextToken"] = next
	}
	return out, nil
}

// serviceDoc renders a service as the ECS Service shape.
func (a *account) serviceDoc(svc *service, withTags bool) map[string]any {
	out := copyMap(svc.extra)
	running, pending := svc.counts()
	deployments := make([]any, len(svc.deployments))
	for i, d := range svc.deployments {
		dd := map[string]any{
			"id":                 d.id,
			"status":             d.status,
			"taskDefinition":     d.taskDefinition,
			"desiredCount":       d.desired,
			"pendingCount":       d.pending,
			"runningCount":       d.running,
			"failedTasks":        d.failed,
			"createdAt":          epoch(d.createdAt),
			"updatedAt":          epoch(d.updatedAt),
			"rolloutState":       d.rolloutState,
			"rolloutStateReason": d.rolloutReason,
		}
		if svc.classicLB() {
			delete(dd, "rolloutState")
			delete(dd, "rolloutStateReason")
		}
		if d.launchType != "" {
			dd["launchType"] = d.launchType
		}
		if nc, ok := svc.extra["networkConfiguration"]; ok {
			dd["networkConfiguration"] = deepCopy(nc)
		}
		deployments[i] = dd
	}
	out["serviceArn"] = svc.arn
	out["serviceName"] = svc.name
	out["clusterArn"] = svc.cluster.arn
	out["status"] = svc.status
	out["desiredCount"] = svc.desiredCount
	out["runningCount"] = running
	out["pendingCount"] = pending
	out["taskDefinition"] = svc.taskDefinition
	out["deploymentConfiguration"] = copyMap(svc.deployConfig)
	out["deployments"] = deployments
	out["events"] = []any{}
	out["createdAt"] = epoch(svc.createdAt)
	out["createdBy"] = "arn:aws:iam::" + a.id + ":root"
	if withTags {
		out["tags"] = tagList(svc.tags)
	}
	return out
}

func (svc *service) snapshot() ServiceState {
	running, pending := svc.counts()
	st := ServiceState{
		Cluster:           svc.cluster.name,
		Name:              svc.name,
		ARN:               svc.arn,
		Status:            svc.status,
		DesiredCount:      svc.desiredCount,
		RunningCount:      running,
		PendingCount:      pending,
		TaskDefinitionARN: svc.taskDefinition,
	}
	for _, d := range svc.deployments {
		st.Deployments = append(st.Deployments, DeploymentState{
			ID:                 d.id,
			Status:             d.status,
			RolloutState:       d.rolloutState,
			RolloutStateReason: d.rolloutReason,
			TaskDefinition:     d.taskDefinition,
			DesiredCount:       d.desired,
			RunningCount:       d.running,
			PendingCount:       d.pending,
			FailedTasks:        d.failed,
			CreatedAt:          d.createdAt,
			UpdatedAt:          d.updatedAt,
		})
		if d.sd != nil {
			st.Deployments[len(st.Deployments)-1].ServiceDeploymentARN = d.sd.arn
		}
		if svc.classicLB() {
			last := &st.Deployments[len(st.Deployments)-1]
			last.RolloutState, last.RolloutStateReason = "", ""
		}
	}
	for _, sd := range svc.sds {
		st.ServiceDeployments = append(st.ServiceDeployments, sd.snapshot())
	}
	return st
}
