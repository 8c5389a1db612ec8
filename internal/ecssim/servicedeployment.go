package ecssim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Service deployment statuses (ServiceDeployment.status).
const (
	SDPending            = "PENDING"
	SDInProgress         = "IN_PROGRESS"
	SDStopRequested      = "STOP_REQUESTED"
	SDRollbackRequested  = "ROLLBACK_REQUESTED"
	SDRollbackInProgress = "ROLLBACK_IN_PROGRESS"
	SDSuccessful         = "SUCCESSFUL"
	SDStopped            = "STOPPED"
	SDRollbackSuccessful = "ROLLBACK_SUCCESSFUL"
	SDRollbackFailed     = "ROLLBACK_FAILED"
)

// Rollback monitor statuses (deploymentCircuitBreaker.status, alarms.status).
const (
	monitorDisabled   = "DISABLED"
	monitorMonitoring = "MONITORING"
	monitorComplete   = "MONITORING_COMPLETE"
	monitorTriggered  = "TRIGGERED"
)

// supersededReason is the statusReason of a service deployment a newer one
// replaced. ECS stops an in-progress service deployment when a newer
// deployment of the service starts (UpdateService with a new task
// definition or forceNewDeployment): the older one ends STOPPED and the
// newer one takes over from whatever revisions are running. The simulator
// does the same for every strategy.
const supersededReason = "Service deployment stopped: a newer deployment of the service started."

// serviceRevision is one ServiceRevision: what a deployment deploys.
type serviceRevision struct {
	arn            string
	svc            *service
	taskDefinition string
	launchType     string
	images         []containerImage
	extra          map[string]any // loadBalancers, networkConfiguration, … as at creation
	createdAt      time.Time
}

type containerImage struct {
	name, image, digest string
}

// serviceDeployment is one ServiceDeployment: a move of the service from
// its source revisions to a target revision.
type serviceDeployment struct {
	arn      string
	svc      *service
	d        *deployment // the target deployment in svc.deployments
	source   *deployment // the PRIMARY deployment when this one started, if any
	target   *serviceRevision
	sources  []*serviceRevision
	strategy string
	config   map[string]any // deploymentConfiguration at start

	status, reason string
	stage          string
	createdAt      time.Time
	startedAt      time.Time
	updatedAt      time.Time
	finishedAt     time.Time
	stoppedAt      time.Time

	rollbackAt     time.Time
	rollbackReason string
	rollbackTo     *serviceRevision

	prodWeight, testWeight float64 // traffic on the target revision, percent
	cbTriggered            bool
	triggeredAlarms        []string
	ignoredAlarms          []string // in ALARM when the deployment started

	// strategy engine (BLUE_GREEN, LINEAR, CANARY)
	plan         []step
	idx          int
	stepStart    time.Time
	rollbackEnds time.Time
	failRollback bool
	hooks        []*hookRun // every hook run, in order
}

func (sd *serviceDeployment) terminal() bool {
	switch sd.status {
	case SDSuccessful, SDStopped, SDRollbackSuccessful, SDRollbackFailed:
		return true
	}
	return false
}

// engineDriven reports whether the strategy engine, not the rolling
// rollout, moves the deployment on.
func (sd *serviceDeployment) engineDriven() bool { return sd != nil && sd.strategy != StrategyRolling }

func sdToken(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// newRevisionLocked records the service revision of a deployment of td.
func (a *account) newRevisionLocked(svc *service, td string, now time.Time) *serviceRevision {
	rev := &serviceRevision{
		arn:            a.arn(fmt.Sprintf("service-revision/%s/%s/%d", svc.cluster.name, svc.name, rand.Int64N(8e18)+1e18)),
		svc:            svc,
		taskDefinition: td,
		createdAt:      now,
		extra:          map[string]any{},
	}
	rev.launchType, _ = svc.extra["launchType"].(string)
	for _, k := range []string{"loadBalancers", "networkConfiguration", "serviceRegistries", "capacityProviderStrategy", "platformVersion"} {
		if v, ok := svc.extra[k]; ok {
			rev.extra[k] = deepCopy(v)
		}
	}
	if t, ok := a.lookupTaskDefLocked(td); ok {
		containers, _ := t.body["containerDefinitions"].([]any)
		for _, c := range containers {
			cd, _ := c.(map[string]any)
			name, _ := cd["name"].(string)
			image, _ := cd["image"].(string)
			rev.images = append(rev.images, containerImage{name: name, image: image, digest: a.srv.resolveDigestLocked(image)})
		}
	}
	svc.revisions = append(svc.revisions, rev)
	return rev
}

var ecrImageRef = regexp.MustCompile(`^(\d{12})\.dkr\.ecr(?:-fips)?\.[a-z0-9-]+\.amazonaws\.com(?:\.cn)?/([^:@]+):([\w][\w.-]{0,127})$`)

// resolveDigestLocked returns the digest ECS records for an image
// reference at deployment time: the digest the reference names, else the
// digest the tag has in the simulator's ECR repository of that account,
// else a deterministic sha256 of the reference.
func (s *Server) resolveDigestLocked(ref string) string {
	if _, d, ok := strings.Cut(ref, "@"); ok && digestPattern.MatchString(d) {
		return d
	}
	if m := ecrImageRef.FindStringSubmatch(ref); m != nil {
		if a, ok := s.accounts[m[1]]; ok {
			if r, ok := a.repos[m[2]]; ok {
				if img := r.find("", m[3]); img != nil {
					return img.digest
				}
			}
		}
	}
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// trackDeploymentLocked records the service deployment of d, a deployment
// just made PRIMARY (source is the previous PRIMARY, nil for a new
// service), stops any service deployment still in progress, and starts the
// strategy engine for non-rolling strategies.
func (a *account) trackDeploymentLocked(svc *service, d, source *deployment, now time.Time) *serviceDeployment {
	for _, old := range svc.sds {
		if !old.terminal() {
			old.stopLocked(supersededReason, now)
		}
	}
	sd := &serviceDeployment{
		arn:       a.arn("service-deployment/" + svc.cluster.name + "/" + svc.name + "/" + sdToken(20)),
		svc:       svc,
		d:         d,
		source:    source,
		target:    a.newRevisionLocked(svc, d.taskDefinition, now),
		strategy:  svc.strategy(),
		config:    copyMap(svc.deployConfig),
		status:    SDInProgress,
		createdAt: now,
		startedAt: now,
		updatedAt: now,
	}
	seen := map[*serviceRevision]bool{}
	for _, od := range svc.deployments {
		if od != d && od.sd != nil {
			rev := od.sd.revisionOf(od)
			if rev != nil && !seen[rev] {
				seen[rev] = true
				sd.sources = append(sd.sources, rev)
			}
		}
	}
	if sd.alarmsEnabled() {
		for _, name := range sd.alarmNames() {
			if a.alarms[name] {
				sd.ignoredAlarms = append(sd.ignoredAlarms, name)
			}
		}
	}
	d.sd = sd
	svc.sds = append([]*serviceDeployment{sd}, svc.sds...)
	if sd.engineDriven() {
		if source == nil {
			// A new service has nothing to shift traffic from.
			sd.plan = nil
		} else {
			sd.plan = a.srv.planFor(sd)
		}
		sd.enterStepLocked(a, 0, now)
	}
	return sd
}

// revisionOf returns the revision deployment od runs under this service
// deployment: the rollback revision for a rollback deployment.
func (sd *serviceDeployment) revisionOf(od *deployment) *serviceRevision {
	if od == sd.d || sd.rollbackTo == nil {
		return sd.target
	}
	return sd.rollbackTo
}

// stopLocked ends the service deployment as STOPPED.
func (sd *serviceDeployment) stopLocked(reason string, now time.Time) {
	sd.status, sd.reason = SDStopped, reason
	sd.stoppedAt, sd.finishedAt, sd.updatedAt = now, now, now
	sd.cancelHooks(now)
}

// rollingDoneLocked records the end of a rolling deployment: completed
// (SUCCESSFUL) or failed by the circuit breaker, with or without a rollback
// to previous.
func (sd *serviceDeployment) rollingDoneLocked(failed bool, reason string, rollbackTo *deployment, now time.Time) {
	if sd == nil || sd.terminal() {
		return
	}
	sd.updatedAt, sd.finishedAt = now, now
	switch {
	case !failed:
		sd.status, sd.reason = SDSuccessful, ""
	case rollbackTo != nil:
		sd.cbTriggered = true
		sd.status, sd.reason = SDRollbackSuccessful, reason
		sd.rollbackAt, sd.rollbackReason = now, reason
		if rollbackTo.sd != nil {
			sd.rollbackTo = rollbackTo.sd.revisionOf(rollbackTo)
		}
	default:
		// No status means "failed without rollback"; ECS stops it.
		sd.cbTriggered = true
		sd.status, sd.reason = SDStopped, reason
		sd.stoppedAt = now
	}
}

// ---- wire operations ----

func errServiceDeploymentNotFound() *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ServiceDeploymentNotFoundException", Message: "Service deployment not found."}
}

func errConflict(format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "ConflictException", Message: fmt.Sprintf(format, args...)}
}

// serviceDeploymentLocked resolves a service deployment ARN.
func (a *account) serviceDeploymentLocked(arn string) (*serviceDeployment, bool) {
	svc, ok := a.serviceOfARNLocked(arn, "service-deployment/")
	if !ok {
		return nil, false
	}
	for _, sd := range svc.sds {
		if sd.arn == arn {
			return sd, true
		}
	}
	return nil, false
}

func (a *account) revisionLocked(arn string) (*serviceRevision, bool) {
	svc, ok := a.serviceOfARNLocked(arn, "service-revision/")
	if !ok {
		return nil, false
	}
	for _, r := range svc.revisions {
		if r.arn == arn {
			return r, true
		}
	}
	return nil, false
}

// serviceOfARNLocked resolves the service of an ARN of the form
// arn:…:<kind><cluster>/<service>/<id>, as service deployments and revisions have.
func (a *account) serviceOfARNLocked(arn, kind string) (*service, bool) {
	rest, ok := strings.CutPrefix(arn, a.arn(kind))
	if !ok {
		return nil, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return nil, false
	}
	c, ok := a.clusters[parts[0]]
	if !ok {
		return nil, false
	}
	svc, ok := c.services[parts[1]]
	return svc, ok
}

// SetServiceDeploymentListLag makes ListServiceDeployments leave out the service deployments
// created less than lag ago, as an eventually consistent list does right after UpdateService
// (0, the default, lists every one at once). DescribeServiceDeployments still knows them.
func (s *Server) SetServiceDeploymentListLag(lag time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listLag = lag
}

func (a *account) opListServiceDeployments(body []byte) (any, error) {
	var req struct {
		Cluster   string   `json:"cluster"`
		Service   string   `json:"service"`
		Status    []string `json:"status"`
		CreatedAt *struct {
			After  *float64 `json:"after"`
			Before *float64 `json:"before"`
		} `json:"createdAt"`
		MaxResults *int   `json:"maxResults"`
		NextToken  string `json:"nextToken"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if req.Service == "" {
		return nil, errInvalidParameter("service must be specified.")
	}
	for _, st := range req.Status {
		if !slices.Contains([]string{SDPending, SDInProgress, SDStopRequested, SDRollbackRequested, SDRollbackInProgress,
			SDSuccessful, SDStopped, SDRollbackSuccessful, SDRollbackFailed}, st) {
			return nil, errInvalidParameter("status contains an invalid value %q.", st)
		}
	}
	svc, err := a.serviceLocked(req.Cluster, req.Service)
	if err != nil {
		return nil, err
	}
	var arns []string
	byARN := map[string]*serviceDeployment{}
	for _, sd := range svc.sds { // newest first
		if len(req.Status) > 0 && !slices.Contains(req.Status, sd.status) {
			continue
		}
		if lag := a.srv.listLag; lag > 0 && a.now().Sub(sd.createdAt) < lag {
			continue // not listed yet (SetServiceDeploymentListLag)
		}
		if req.CreatedAt != nil {
			at := epoch(sd.createdAt)
			if req.CreatedAt.After != nil && at < *req.CreatedAt.After {
				continue
			}
			if req.CreatedAt.Before != nil && at > *req.CreatedAt.Before {
				continue
			}
		}
		arns = append(arns, sd.arn)
		byARN[sd.arn] = sd
	}
	limit := 20
	if req.MaxResults != nil {
		if *req.MaxResults < 1 || *req.MaxResults > 100 {
			return nil, errInvalidParameter("maxResults must be between 1 and 100.")
		}
		limit = *req.MaxResults
	}
	page, next, err := paginate(arns, &limit, req.NextToken)
	if err != nil {
		return nil, err
	}
	briefs := make([]any, 0, len(page))
	for _, arn := range page {
		sd := byARN[arn]
		b := map[string]any{
			"serviceDeploymentArn":     sd.arn,
			"serviceArn":               svc.arn,
			"clusterArn":               svc.cluster.arn,
			"createdAt":                epoch(sd.createdAt),
			"startedAt":                epoch(sd.startedAt),
			"targetServiceRevisionArn": sd.target.arn,
			"status":                   sd.status,
		}
		if sd.reason != "" {
			b["statusReason"] = sd.reason
		}
		if !sd.finishedAt.IsZero() {
			b["finishedAt"] = epoch(sd.finishedAt)
		}
		briefs = append(briefs, b)
	}
	out := map[string]any{"serviceDeployments": briefs}
	if next != "" {
		out["nextToken"] = next
	}
	return out, nil
}

func (a *account) opDescribeServiceDeployments(body []byte) (any, error) {
	var req struct {
		ARNs []string `json:"serviceDeploymentArns"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	return describeARNs(req.ARNs, "serviceDeploymentArns", "serviceDeployments", func(arn string) (map[string]any, bool) {
		sd, ok := a.serviceDeploymentLocked(arn)
		if !ok {
			return nil, false
		}
		return sd.doc(), true
	})
}

func (a *account) opDescribeServiceRevisions(body []byte) (any, error) {
	var req struct {
		ARNs []string `json:"serviceRevisionArns"`
	}
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	return describeARNs(req.ARNs, "serviceRevisionArns", "serviceRevisions", func(arn string) (map[string]any, bool) {
		rev, ok := a.revisionLocked(arn)
		if !ok {
			return nil, false
		}
		return rev.doc(), true
	})
}

// describeARNs answers a Describe… call for arns, the request field field (up to 20): under
// key the document doc finds for each ARN, and a MISSING failure for each it does not find.
func describeARNs(arns []string, field, key string, doc func(arn string) (map[string]any, bool)) (any, error) {
	switch {
	case len(arns) == 0:
		return nil, errInvalidParameter("%s cannot be empty.", field)
	case len(arns) > 20:
		return nil, errInvalidParameter("%s cannot have more than 20 elements.", field)
	}
	docs, failures := []any{}, []any{}
	for _, arn := range arns {
		d, ok := doc(arn)
		if !ok {
			failures = append(failures, map[string]any{"arn": arn, "reason": "MISSING"})
			continue
		}
		docs = append(docs, d)
	}
	return map[string]any{key: docs, "failures": failures}, nil
}

func (rev *serviceRevision) doc() map[string]any {
	out := copyMap(rev.extra)
	images := make([]any, len(rev.images))
	for i, im := range rev.images {
		images[i] = map[string]any{"containerName": im.name, "image": im.image, "imageDigest": im.digest}
	}
	out["serviceRevisionArn"] = rev.arn
	out["serviceArn"] = rev.svc.arn
	out["clusterArn"] = rev.svc.cluster.arn
	out["taskDefinition"] = rev.taskDefinition
	out["containerImages"] = images
	out["createdAt"] = epoch(rev.createdAt)
	if rev.launchType != "" {
		out["launchType"] = rev.launchType
	}
	return out
}

// summary renders a revision as ServiceRevisionSummary for a deployment
// that runs it with d's counts and the given traffic weights (nil: none).
func summary(rev *serviceRevision, d *deployment, prod, test *float64) map[string]any {
	out := map[string]any{"arn": rev.arn, "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0}
	if d != nil {
		out["requestedTaskCount"], out["runningTaskCount"], out["pendingTaskCount"] = d.desired, d.running, d.pending
	}
	if prod != nil {
		out["requestedProductionTrafficWeight"] = *prod
	}
	if test != nil {
		out["requestedTestTrafficWeight"] = *test
	}
	return out
}

// deploymentOf returns the live deployment of svc running rev, if any.
func (svc *service) deploymentOf(rev *serviceRevision) *deployment {
	for _, d := range svc.deployments {
		if d.sd != nil && d.sd.revisionOf(d) == rev {
			return d
		}
	}
	return nil
}

// doc renders the ServiceDeployment shape.
func (sd *serviceDeployment) doc() map[string]any {
	svc := sd.svc
	out := map[string]any{
		"serviceDeploymentArn":    sd.arn,
		"serviceArn":              svc.arn,
		"clusterArn":              svc.cluster.arn,
		"createdAt":               epoch(sd.createdAt),
		"startedAt":               epoch(sd.startedAt),
		"updatedAt":               epoch(sd.updatedAt),
		"status":                  sd.status,
		"deploymentConfiguration": copyMap(sd.config),
	}
	if sd.reason != "" {
		out["statusReason"] = sd.reason
	}
	if !sd.finishedAt.IsZero() {
		out["finishedAt"] = epoch(sd.finishedAt)
	}
	if !sd.stoppedAt.IsZero() {
		out["stoppedAt"] = epoch(sd.stoppedAt)
	}
	var prod, test, srcProd, srcTest *float64
	if sd.engineDriven() {
		p, t := sd.prodWeight, sd.testWeight
		sp, st := 100-p, 100-t
		prod, test, srcProd, srcTest = &p, &t, &sp, &st
		if sd.stage != "" {
			out["lifecycleStage"] = sd.stage
		}
	}
	targetD := sd.d
	if !slices.Contains(svc.deployments, targetD) {
		targetD = nil
	}
	out["targetServiceRevision"] = summary(sd.target, targetD, prod, test)
	sources := make([]any, len(sd.sources))
	for i, rev := range sd.sources {
		var sp, st *float64
		if i == 0 {
			sp, st = srcProd, srcTest
		} else if srcProd != nil {
			zero := 0.0
			sp, st = &zero, &zero
		}
		sources[i] = summary(rev, svc.deploymentOf(rev), sp, st)
	}
	out["sourceServiceRevisions"] = sources
	if !sd.rollbackAt.IsZero() {
		rb := map[string]any{"reason": sd.rollbackReason, "startedAt": epoch(sd.rollbackAt)}
		if sd.rollbackTo != nil {
			rb["serviceRevisionArn"] = sd.rollbackTo.arn
		}
		out["rollback"] = rb
	}
	out["deploymentCircuitBreaker"] = sd.circuitBreakerDoc()
	out["alarms"] = sd.alarmsDoc()
	if hooks := sd.hookDetails(); len(hooks) > 0 {
		out["lifecycleHookDetails"] = hooks
	}
	return out
}

func (sd *serviceDeployment) circuitBreakerDoc() map[string]any {
	cb, _ := sd.config["deploymentCircuitBreaker"].(map[string]any)
	enabled, _ := cb["enable"].(bool)
	failed := 0
	if sd.d != nil {
		failed = sd.d.failed
	}
	threshold := min(max(sd.d.desired/2, 3), 200)
	status := monitorDisabled
	switch {
	case !enabled || sd.engineDriven():
		// The circuit breaker watches rolling deployments only.
	case sd.cbTriggered:
		status = monitorTriggered
	case sd.terminal():
		status = monitorComplete
	default:
		status = monitorMonitoring
	}
	return map[string]any{"status": status, "failureCount": failed, "threshold": threshold}
}

func (sd *serviceDeployment) alarmsEnabled() bool {
	al, _ := sd.config["alarms"].(map[string]any)
	enabled, _ := al["enable"].(bool)
	return enabled
}

func (sd *serviceDeployment) alarmNames() []string {
	al, _ := sd.config["alarms"].(map[string]any)
	names, _ := al["alarmNames"].([]any)
	var out []string
	for _, n := range names {
		if s, ok := n.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func (sd *serviceDeployment) alarmsDoc() map[string]any {
	out := map[string]any{"status": monitorDisabled}
	if !sd.alarmsEnabled() {
		return out
	}
	out["alarmNames"] = sd.alarmNames()
	switch {
	case len(sd.triggeredAlarms) > 0:
		out["status"] = monitorTriggered
		out["triggeredAlarmNames"] = slices.Clone(sd.triggeredAlarms)
	case sd.terminal():
		out["status"] = monitorComplete
	default:
		out["status"] = monitorMonitoring
	}
	return out
}
