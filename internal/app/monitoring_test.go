package app_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/awsecs"
)

// The leader election lease of cmd/manager, which the no-leader alert and the dashboard name.
const leaderElectionID = "autodeploy.deploy.autodeploy.dev"

// withMonitoring runs the manager as cmd/manager does for Prometheus (harness.monitored).
func withMonitoring() harnessOption {
	return func(c *harnessConfig) { c.monitored = true }
}

// monitorOptions serves the manager's metrics on a free loopback port and turns leader
// election on, with cmd/manager's lease name in the test's namespace.
func (h *harness) monitorOptions(opts *ctrl.Options) {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	h.g.Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	h.g.Expect(ln.Close()).To(Succeed())
	opts.Metrics.BindAddress = addr
	opts.LeaderElection = true
	opts.LeaderElectionID = leaderElectionID
	opts.LeaderElectionNamespace = h.ns
	opts.LeaderElectionReleaseOnCancel = true
}

// monitor registers the Environment collector over the manager's cache, as cmd/manager does,
// and returns the metrics URL and the function that unregisters the collector.
func (h *harness) monitor(mgr ctrl.Manager, opts ctrl.Options) (string, func()) {
	h.t.Helper()
	c := controllers.NewEnvironmentCollector(mgr.GetCache())
	h.g.Expect(ctrlmetrics.Registry.Register(c)).To(Succeed())
	return "http://" + opts.Metrics.BindAddress + "/metrics", func() { ctrlmetrics.Registry.Unregister(c) }
}

// exported maps each series name a scrape holds to the label names its samples carry.
type exported map[string]map[string]bool

// targetLabels are added by Prometheus to every scraped sample.
var targetLabels = []string{"instance", "job"}

// scrape reads the manager's /metrics over HTTP, with Prometheus' text parser.
func scrape(url string) (exported, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := exported{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		with := func(extra string) map[string]bool {
			m := map[string]bool{extra: true}
			for l := range labels {
				m[l] = true
			}
			return m
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = with("le"), labels, labels
		case dto.MetricType_SUMMARY:
			out[name], out[name+"_sum"], out[name+"_count"] = with("quantile"), labels, labels
		default:
			out[name] = labels
		}
	}
	return out, nil
}

// has reports whether series name carries label l (or Prometheus adds it).
func (e exported) has(name, l string) bool {
	return e[name][l] || slices.Contains(targetLabels, l)
}

// exprCheck is what checking one PromQL expression found.
type exprCheck struct {
	metrics  []string
	output   map[string]bool // the labels the expression's result carries; nil when not known
	problems []string
}

// checkExpr parses expr with the PromQL parser and checks it against a scrape: every metric
// it selects is exported, and every label in a matcher, a by or without clause, or an on or
// ignoring clause is one that metric carries.
func checkExpr(expr string, have exported) exprCheck {
	var c exprCheck
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		c.problems = append(c.problems, fmt.Sprintf("%q does not parse: %v", expr, err))
		return c
	}
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name := selectorName(n)
			c.metrics = append(c.metrics, name)
			if _, ok := have[name]; !ok {
				c.problems = append(c.problems, fmt.Sprintf("%q: the manager exports no %s", expr, name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != model.MetricNameLabel && !have.has(name, m.Name) {
					c.problems = append(c.problems, fmt.Sprintf("%q: %s has no label %s", expr, name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			c.problems = append(c.problems, checkLabels(expr, n.Grouping, have, selectorsIn(n.Expr))...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				names := append(selectorsIn(n.LHS), selectorsIn(n.RHS)...)
				c.problems = append(c.problems, checkLabels(expr, n.VectorMatching.MatchingLabels, have, names)...)
				c.problems = append(c.problems, checkLabels(expr, n.VectorMatching.Include, have, names)...)
			}
		}
		return nil
	})
	c.output = outputLabels(e, have)
	return c
}

// checkLabels reports each label that none of the metrics names carries.
func checkLabels(expr string, labels []string, have exported, names []string) []string {
	var problems []string
	for _, l := range labels {
		if !slices.ContainsFunc(names, func(n string) bool { return have.has(n, l) }) {
			problems = append(problems, fmt.Sprintf("%q: no metric of %v has label %s", expr, names, l))
		}
	}
	return problems
}

func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel {
			return m.Value
		}
	}
	return ""
}

func selectorsIn(e parser.Node) []string {
	var names []string
	parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			names = append(names, selectorName(vs))
		}
		return nil
	})
	return names
}

// outputLabels returns the labels of the series e evaluates to, as far as the few forms the
// rules and the dashboard use tell (nil: not known, so nothing is checked against it).
func outputLabels(e parser.Node, have exported) map[string]bool {
	set := func(ls ...string) map[string]bool {
		m := map[string]bool{}
		for _, l := range ls {
			m[l] = true
		}
		return m
	}
	switch n := e.(type) {
	case *parser.ParenExpr:
		return outputLabels(n.Expr, have)
	case *parser.NumberLiteral:
		return set()
	case *parser.VectorSelector:
		m := set(targetLabels...)
		for l := range have[selectorName(n)] {
			m[l] = true
		}
		return m
	case *parser.MatrixSelector:
		return outputLabels(n.VectorSelector, have)
	case *parser.AggregateExpr:
		if n.Without {
			return nil
		}
		return set(n.Grouping...)
	case *parser.Call:
		switch n.Func.Name {
		case "time", "vector", "scalar":
			return set()
		case "absent":
			m := set()
			if vs, ok := n.Args[0].(*parser.VectorSelector); ok {
				for _, mt := range vs.LabelMatchers {
					if mt.Name != model.MetricNameLabel && mt.Type == labels.MatchEqual {
						m[mt.Name] = true
					}
				}
			}
			return m
		case "histogram_quantile":
			m := outputLabels(n.Args[1], have)
			delete(m, "le")
			return m
		case "rate", "increase", "irate", "delta", "deriv", "abs", "ceil", "floor", "round":
			return outputLabels(n.Args[0], have)
		}
		return nil
	case *parser.BinaryExpr:
		lhs, rhs := outputLabels(n.LHS, have), outputLabels(n.RHS, have)
		switch {
		case n.Op == parser.LOR:
			if lhs == nil || rhs == nil {
				return nil
			}
			for l := range rhs {
				lhs[l] = true
			}
			return lhs
		case n.LHS.Type() == parser.ValueTypeScalar:
			return rhs
		default:
			return lhs
		}
	}
	return nil
}

var (
	alertLabelRef   = regexp.MustCompile(`\$labels\.([A-Za-z_][A-Za-z0-9_]*)`)
	legendLabelRef  = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
	grafanaVariable = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
)

// checkRefs reports each label a template refers to that the expression's result lacks.
func checkRefs(where, text string, ref *regexp.Regexp, c exprCheck) []string {
	if c.output == nil {
		return nil
	}
	var problems []string
	for _, m := range ref.FindAllStringSubmatch(text, -1) {
		if !c.output[m[1]] {
			problems = append(problems, fmt.Sprintf("%s refers to label %s, which its expression's result does not carry", where, m[1]))
		}
	}
	return problems
}

// alertRules reads config/prometheus/rules.yaml (a PrometheusRule) and parses its groups with
// Prometheus' own rule-file parser, which also parses every expression and template.
func alertRules(g *WithT) *rulefmt.RuleGroups {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "prometheus", "rules.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var obj struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			Groups json.RawMessage `json:"groups"`
		} `json:"spec"`
	}
	g.Expect(yaml.Unmarshal(raw, &obj)).To(Succeed())
	g.Expect(obj.APIVersion + " " + obj.Kind).To(Equal("monitoring.coreos.com/v1 PrometheusRule"))
	file, err := yaml.JSONToYAML([]byte(`{"groups":` + string(obj.Spec.Groups) + `}`))
	g.Expect(err).NotTo(HaveOccurred())
	groups, errs := rulefmt.Parse(file, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	g.Expect(errs).To(BeEmpty(), "rulefmt")
	g.Expect(groups.Groups).NotTo(BeEmpty())
	return groups
}

// dashboardQuery is one query of a dashboard panel.
type dashboardQuery struct {
	panel, expr, legend string
}

// dashboardQueries reads config/grafana/autodeploy.json and returns its panels' queries, with
// Grafana's interval variables replaced by a duration so that PromQL can parse them.
func dashboardQueries(g *WithT) []dashboardQuery {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "grafana", "autodeploy.json"))
	g.Expect(err).NotTo(HaveOccurred())
	type panel struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	g.Expect(json.Unmarshal(raw, &dash)).To(Succeed())
	g.Expect(dash.UID).To(Equal("autodeploy"))
	g.Expect(dash.Templating.List).To(ContainElement(And(
		HaveField("Name", "datasource"), HaveField("Type", "datasource"), HaveField("Query", "prometheus"))))
	var out []dashboardQuery
	for _, p := range dash.Panels {
		g.Expect(p.Panels).To(BeEmpty(), "panel %q: rows are kept expanded, their panels at the top level", p.Title)
		if p.Type == "row" {
			continue
		}
		g.Expect(p.Datasource).NotTo(BeNil(), "panel %q has no data source", p.Title)
		g.Expect(*p.Datasource).To(HaveField("UID", "${datasource}"), "panel %q", p.Title)
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q has no query", p.Title)
		for _, t := range p.Targets {
			expr := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h").Replace(t.Expr)
			g.Expect(grafanaVariable.FindAllString(expr, -1)).To(BeEmpty(), "panel %q: %s uses an unknown variable", p.Title, t.Expr)
			out = append(out, dashboardQuery{panel: p.Title, expr: expr, legend: t.LegendFormat})
		}
	}
	return out
}

// runbookAnchors returns the anchors GitHub gives docs/monitoring.md's headings.
func runbookAnchors(g *WithT) map[string]bool {
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "monitoring.md"))
	g.Expect(err).NotTo(HaveOccurred())
	anchors := map[string]bool{}
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		anchor := strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				return r
			case r == ' ':
				return '-'
			}
			return -1
		}, title)
		anchors[anchor] = true
	}
	return anchors
}

// TestMonitoringChecksCatchUnknownNamesAndLabels: the checks below would flag a metric the
// manager does not export, a label it does not carry, and a template naming a lost label.
func TestMonitoringChecksCatchUnknownNamesAndLabels(t *testing.T) {
	g := NewWithT(t)
	have := exported{"autodeploy_deploys_total": {"result": true}, "x_bucket": {"le": true, "op": true}}
	for expr, want := range map[string]string{
		`rate(autodeploy_deploy_total[5m])`:                               "the manager exports no autodeploy_deploy_total",
		`autodeploy_deploys_total{outcome="failed"}`:                      "has no label outcome",
		`sum by (reason) (rate(autodeploy_deploys_total[5m]))`:            "has label reason",
		`sum(rate(autodeploy_deploys_total[5m]`:                           "does not parse",
		`histogram_quantile(0.9, sum by (le, code) (rate(x_bucket[5m])))`: "has label code",
	} {
		c := checkExpr(expr, have)
		g.Expect(c.problems).To(ContainElement(ContainSubstring(want)), expr)
	}
	c := checkExpr(`histogram_quantile(0.9, sum by (le, op) (rate(x_bucket[5m]))) > 3`, have)
	g.Expect(c.problems).To(BeEmpty())
	g.Expect(checkRefs("alert", "{{ $labels.op }} {{ $labels.le }}", alertLabelRef, c)).To(ConsistOf(ContainSubstring("label le")))
	g.Expect(checkExpr(`sum(rate(autodeploy_deploys_total{result="failed"}[5m])) > 0`, have).problems).To(BeEmpty())
}

// TestAlertsAndDashboardUseWhatTheManagerExports parses the alerting rules with Prometheus'
// rule-file parser and every rule and dashboard query with its PromQL parser, then drives a
// deploy through a manager run as in production (leader election, metrics over HTTP) and
// checks every metric and label they use against what its /metrics serves.
func TestAlertsAndDashboardUseWhatTheManagerExports(t *testing.T) {
	h := newHarness(t, withMonitoring(), withBudget(awsecs.AWSLimits()))
	g := h.g
	groups := alertRules(g)
	queries := dashboardQueries(g)
	anchors := runbookAnchors(g)

	// Every alert pages or tickets, says what is wrong and links its runbook section.
	var alerts []string
	for _, grp := range groups.Groups {
		for _, r := range grp.Rules {
			g.Expect(r.Alert).NotTo(BeEmpty(), "rule %q: only alerting rules", r.Expr)
			alerts = append(alerts, r.Alert)
			g.Expect(r.Labels).To(HaveKeyWithValue("severity", BeElementOf("critical", "warning")), r.Alert)
			g.Expect(r.Annotations).To(And(HaveKey("summary"), HaveKey("description")), r.Alert)
			g.Expect(r.Annotations["runbook_url"]).To(HaveSuffix("docs/monitoring.md#"+strings.ToLower(r.Alert)), r.Alert)
			g.Expect(anchors).To(HaveKey(strings.ToLower(r.Alert)), "docs/monitoring.md has a section %s", r.Alert)
		}
	}
	g.Expect(alerts).To(ContainElements("AutodeployDeployFailed", "AutodeployDeployRolledBack", "AutodeployEnvironmentStalled",
		"AutodeployReceiverErrors", "AutodeployECSThrottled", "AutodeployECSBudgetWaitGrowing",
		"AutodeployBuildToDeployedSlow", "AutodeployNoLeader"))

	// One deploy, a stalled Environment, a replayed and a forged manifest: every family has samples.
	h.seedService("prod", "shop-api", image("v1"))
	h.createEnv("deployed", nil)
	h.createEnv("missing", func(e *deployv1.Environment) { e.Spec.ECS.Service = "gone" })
	h.startManager()
	b := newBuild(1)
	now := time.Now()
	g.Expect(h.postSigned(b.body(), testKey, now).Code).To(Equal(http.StatusAccepted))
	g.Expect(h.postSigned(b.body(), testKey, now).Code).To(BeNumerically("<", 300), "a replayed manifest is answered as before")
	g.Expect(h.postSigned(newBuild(2).body(), []byte("not-the-manifest-key-0123"), now).Code).To(Equal(http.StatusUnauthorized))
	g.Eventually(h.env("deployed"), timeout, poll).Should(WithTransform(rolloutResult, Equal(deployv1.ResultCompleted)))
	g.Eventually(h.env("missing"), timeout, poll).Should(WithTransform(readyReason, Equal("False/"+deployv1.ReasonServiceNotFound)))

	check := func(have exported) []string {
		var problems []string
		for _, grp := range groups.Groups {
			for _, r := range grp.Rules {
				c := checkExpr(r.Expr, have)
				problems = append(problems, c.problems...)
				for k, v := range r.Annotations {
					problems = append(problems, checkRefs(r.Alert+" annotation "+k, v, alertLabelRef, c)...)
				}
			}
		}
		for _, q := range queries {
			c := checkExpr(q.expr, have)
			problems = append(problems, c.problems...)
			problems = append(problems, checkRefs("panel "+q.panel+" legend", q.legend, legendLabelRef, c)...)
		}
		return problems
	}
	// Families appear as the deploy goes (the histogram once the rollout is recorded, the
	// leader gauge once the lease is held), so the scrape is repeated until all are there.
	var have exported
	g.Eventually(func() []string {
		var err error
		if have, err = scrape(h.mgr.metricsURL); err != nil {
			return []string{err.Error()}
		}
		return check(have)
	}, timeout, poll).Should(BeEmpty())

	// The rules and the dashboard cover what a team watches.
	used := func(exprs []string) []string {
		var names []string
		for _, e := range exprs {
			names = append(names, checkExpr(e, have).metrics...)
		}
		sort.Strings(names)
		return slices.Compact(names)
	}
	var ruleExprs, panelExprs []string
	for _, grp := range groups.Groups {
		for _, r := range grp.Rules {
			ruleExprs = append(ruleExprs, r.Expr)
		}
	}
	for _, q := range queries {
		panelExprs = append(panelExprs, q.expr)
	}
	g.Expect(used(ruleExprs)).To(ContainElements("autodeploy_deploys_total", "autodeploy_rollbacks_total",
		"autodeploy_environment_stalled_since_timestamp_seconds", "autodeploy_receiver_requests_total",
		"autodeploy_ecs_calls_total", "autodeploy_ecs_budget_wait_seconds_sum", "autodeploy_build_to_deployed_seconds_bucket",
		"leader_election_master_status"))
	g.Expect(used(panelExprs)).To(ContainElements("autodeploy_deploys_total", "autodeploy_build_to_deployed_seconds_bucket",
		"autodeploy_ecs_calls_total", "autodeploy_receiver_requests_total", "autodeploy_environments"))
}
