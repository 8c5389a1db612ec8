package test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	. "github.com/onsi/gomega"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"
	"sigs.k8s.io/kustomize/kyaml/yaml"

	"github.com/autodeploy-dev/autodeploy/controllers"
	"github.com/autodeploy-dev/autodeploy/internal/ecssim"
	"github.com/autodeploy-dev/autodeploy/internal/eventbridge"
	"github.com/autodeploy-dev/autodeploy/internal/receiver"
)

// The fake values the module's data sources read, the ones of docs/iam.md's examples.
const (
	tfAccount = "123456789012"
	tfRegion  = "us-east-1"
)

// tfModule is a Terraform module read with HCL's own parser: its variables, locals, data
// sources and resources, as blocks whose expressions are evaluated the way Terraform does,
// with the module's variables and fake values for what only AWS knows (resource ARNs, the
// account).
type tfModule struct {
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]*hclsyntax.Block // "type.name"
	data      map[string]*hclsyntax.Block // "type.name"
	terraform []*hclsyntax.Block
}

func loadTerraform(t *testing.T, dir string) *tfModule {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no .tf files in %s (%v)", dir, err)
	}
	m := &tfModule{variables: map[string]*hclsyntax.Block{}, locals: map[string]*hclsyntax.Attribute{},
		resources: map[string]*hclsyntax.Block{}, data: map[string]*hclsyntax.Block{}}
	parser := hclparse.NewParser()
	for _, file := range files {
		f, diags := parser.ParseHCLFile(file)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", file, diags)
		}
		body := f.Body.(*hclsyntax.Body)
		if len(body.Attributes) > 0 {
			t.Fatalf("%s: top-level attributes are not Terraform", file)
		}
		for _, b := range body.Blocks {
			switch b.Type {
			case "variable":
				m.variables[b.Labels[0]] = b
			case "locals":
				for name, a := range b.Body.Attributes {
					if _, dup := m.locals[name]; dup {
						t.Fatalf("%s: local %q defined twice", file, name)
					}
					m.locals[name] = a
				}
			case "resource":
				m.resources[b.Labels[0]+"."+b.Labels[1]] = b
			case "data":
				m.data[b.Labels[0]+"."+b.Labels[1]] = b
			case "terraform":
				m.terraform = append(m.terraform, b)
			case "output", "provider", "module":
			default:
				t.Fatalf("%s: unknown block %q", file, b.Type)
			}
		}
	}
	return m
}

func (m *tfModule) resource(t *testing.T, addr string) *hclsyntax.Block {
	t.Helper()
	b, ok := m.resources[addr]
	if !ok {
		t.Fatalf("the module has no resource %s", addr)
	}
	return b
}

func (m *tfModule) dataSource(t *testing.T, addr string) *hclsyntax.Block {
	t.Helper()
	b, ok := m.data[addr]
	if !ok {
		t.Fatalf("the module has no data source %s", addr)
	}
	return b
}

// tfFake is what the context holds for an attribute of a resource or data source that only
// AWS knows: "<address.attribute>".
func tfFake(addr, attr string) string { return "<" + addr + "." + attr + ">" }

func tfFakeObject(addr string) cty.Value {
	attrs := map[string]cty.Value{}
	for _, a := range []string{"arn", "id", "name", "json", "invocation_endpoint"} {
		attrs[a] = cty.StringVal(tfFake(addr, a))
	}
	return cty.ObjectVal(attrs)
}

var tfFunctions = map[string]function.Function{
	"coalesce":   stdlib.CoalesceFunc,
	"concat":     stdlib.ConcatFunc,
	"element":    stdlib.ElementFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"length":     stdlib.LengthFunc,
	"split":      stdlib.SplitFunc,
}

// context evaluates the module's variables (defaults, overridden by vars, converted to their
// declared types as Terraform does) and locals.
func (m *tfModule) context(t *testing.T, vars map[string]cty.Value) *hcl.EvalContext {
	t.Helper()
	values := map[string]cty.Value{}
	for name := range vars {
		if _, ok := m.variables[name]; !ok {
			t.Fatalf("the module has no variable %q", name)
		}
	}
	for name, b := range m.variables {
		typeAttr, ok := b.Body.Attributes["type"]
		if !ok {
			t.Fatalf("variable %q has no type", name)
		}
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(typeAttr.Expr)
		if diags.HasErrors() {
			t.Fatalf("variable %q: %v", name, diags)
		}
		v, given := vars[name]
		if !given {
			def, ok := b.Body.Attributes["default"]
			if !ok {
				t.Fatalf("variable %q has no default and the test gives no value", name)
			}
			v, diags = def.Expr.Value(nil)
			if diags.HasErrors() {
				t.Fatalf("variable %q default: %v", name, diags)
			}
		}
		if defaults != nil {
			v = defaults.Apply(v)
		}
		converted, err := convert.Convert(v, ty)
		if err != nil {
			t.Fatalf("variable %q: %v does not convert to its type: %v", name, v.GoString(), err)
		}
		values[name] = converted
	}

	data := map[string]map[string]cty.Value{}
	for addr := range m.data {
		typ, name, _ := strings.Cut(addr, ".")
		if data[typ] == nil {
			data[typ] = map[string]cty.Value{}
		}
		data[typ][name] = tfFakeObject("data." + addr)
	}
	data["aws_caller_identity"]["current"] = cty.ObjectVal(map[string]cty.Value{"account_id": cty.StringVal(tfAccount)})
	data["aws_partition"]["current"] = cty.ObjectVal(map[string]cty.Value{"partition": cty.StringVal("aws")})
	data["aws_region"]["current"] = cty.ObjectVal(map[string]cty.Value{"region": cty.StringVal(tfRegion)})
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(values)}, Functions: tfFunctions}
	dataVals := map[string]cty.Value{}
	for typ, names := range data {
		dataVals[typ] = cty.ObjectVal(names)
	}
	ctx.Variables["data"] = cty.ObjectVal(dataVals)

	resources := map[string]map[string]cty.Value{}
	for addr, b := range m.resources {
		typ, name, _ := strings.Cut(addr, ".")
		if resources[typ] == nil {
			resources[typ] = map[string]cty.Value{}
		}
		v := tfFakeObject(addr)
		if _, counted := b.Body.Attributes["count"]; counted {
			v = cty.TupleVal([]cty.Value{tfFakeObject(addr + "[0]")})
		} else if _, each := b.Body.Attributes["for_each"]; each {
			v = cty.DynamicVal
		}
		resources[typ][name] = v
	}
	for typ, names := range resources {
		ctx.Variables[typ] = cty.ObjectVal(names)
	}

	// Locals in the order of their references to each other.
	locals := map[string]cty.Value{}
	for len(locals) < len(m.locals) {
		progress := false
		for name, a := range m.locals {
			if _, done := locals[name]; done {
				continue
			}
			ready := true
			for _, tr := range a.Expr.Variables() {
				if tr.RootName() != "local" || len(tr) < 2 {
					continue
				}
				if ref, ok := tr[1].(hcl.TraverseAttr); ok {
					if _, known := m.locals[ref.Name]; !known {
						t.Fatalf("local %q refers to undefined local.%s", name, ref.Name)
					}
					if _, done := locals[ref.Name]; !done {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(locals)
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatalf("local %q: %v", name, diags)
			}
			locals[name] = v
			progress = true
		}
		if !progress {
			t.Fatalf("the locals refer to each other in a cycle")
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

func tfAttr(t *testing.T, b *hclsyntax.Block, name string, ctx *hcl.EvalContext) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[name]
	if !ok {
		t.Fatalf("%s %v has no attribute %q", b.Type, b.Labels, name)
	}
	v, diags := a.Expr.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("%s %v %s: %v", b.Type, b.Labels, name, diags)
	}
	return v
}

func tfBlock(t *testing.T, b *hclsyntax.Block, typ string) *hclsyntax.Block {
	t.Helper()
	var found *hclsyntax.Block
	for _, n := range b.Body.Blocks {
		if n.Type == typ {
			if found != nil {
				t.Fatalf("%s %v has more than one %s block", b.Type, b.Labels, typ)
			}
			found = n
		}
	}
	if found == nil {
		t.Fatalf("%s %v has no %s block", b.Type, b.Labels, typ)
	}
	return found
}

// tfExpand returns the blocks of type typ in b, static and dynamic ones, each with the context
// to evaluate it in (a dynamic block's content with its iterator).
func tfExpand(t *testing.T, b *hclsyntax.Block, typ string, ctx *hcl.EvalContext) (blocks []*hclsyntax.Block, ctxs []*hcl.EvalContext) {
	t.Helper()
	for _, n := range b.Body.Blocks {
		switch {
		case n.Type == typ:
			blocks, ctxs = append(blocks, n), append(ctxs, ctx)
		case n.Type == "dynamic" && n.Labels[0] == typ:
			each := tfAttr(t, n, "for_each", ctx)
			content := tfBlock(t, n, "content")
			for it := each.ElementIterator(); it.Next(); {
				k, v := it.Element()
				child := ctx.NewChild()
				child.Variables = map[string]cty.Value{typ: cty.ObjectVal(map[string]cty.Value{"key": k, "value": v})}
				blocks, ctxs = append(blocks, content), append(ctxs, child)
			}
		}
	}
	return blocks, ctxs
}

func tfString(t *testing.T, v cty.Value) string {
	t.Helper()
	if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		t.Fatalf("%s is no known string", v.GoString())
	}
	return v.AsString()
}

// tfGo turns a cty value into what encoding/json would decode.
func tfGo(t *testing.T, v cty.Value) any {
	t.Helper()
	raw, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		t.Fatalf("%s: %v", v.GoString(), err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// tfPolicy renders the statements of an aws_iam_policy_document as the policy JSON it
// produces, lists everywhere (iamNormalizePolicy gives docs/iam.md's JSON the same shape).
func tfPolicy(t *testing.T, doc *hclsyntax.Block, ctx *hcl.EvalContext) []any {
	t.Helper()
	var out []any
	blocks, ctxs := tfExpand(t, doc, "statement", ctx)
	for i, st := range blocks {
		c := ctxs[i]
		s := map[string]any{"Effect": tfString(t, tfAttr(t, st, "effect", c)), "Action": tfGo(t, tfAttr(t, st, "actions", c))}
		if _, ok := st.Body.Attributes["sid"]; ok {
			s["Sid"] = tfString(t, tfAttr(t, st, "sid", c))
		}
		if _, ok := st.Body.Attributes["resources"]; ok {
			s["Resource"] = tfGo(t, tfAttr(t, st, "resources", c))
		}
		ps, pctxs := tfExpand(t, st, "principals", c)
		if len(ps) > 0 {
			principal := map[string]any{}
			for j, p := range ps {
				principal[tfString(t, tfAttr(t, p, "type", pctxs[j]))] = tfGo(t, tfAttr(t, p, "identifiers", pctxs[j]))
			}
			s["Principal"] = principal
		}
		cs, cctxs := tfExpand(t, st, "condition", c)
		if len(cs) > 0 {
			cond := map[string]any{}
			for j, cb := range cs {
				test := tfString(t, tfAttr(t, cb, "test", cctxs[j]))
				if cond[test] == nil {
					cond[test] = map[string]any{}
				}
				cond[test].(map[string]any)[tfString(t, tfAttr(t, cb, "variable", cctxs[j]))] = tfGo(t, tfAttr(t, cb, "values", cctxs[j]))
			}
			s["Condition"] = cond
		}
		out = append(out, s)
	}
	return out
}

// iamNormalize makes every string value of an object, which IAM also takes as a one-element
// list, a list.
func iamNormalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if s, ok := e.(string); ok {
				out[k] = []any{s}
			} else {
				out[k] = iamNormalize(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = iamNormalize(e)
		}
		return out
	}
	return v
}

func iamNormalizePolicy(statements []any) []any {
	out := make([]any, len(statements))
	for i, st := range statements {
		m := iamNormalize(st).(map[string]any)
		for _, k := range []string{"Sid", "Effect"} {
			if v, ok := m[k].([]any); ok {
				m[k] = v[0]
			}
		}
		out[i] = m
	}
	return out
}

// iamJSONBlock returns the n-th ```json block after the heading in docs/iam.md, decoded.
func iamJSONBlock(t *testing.T, doc, heading string, n int) map[string]any {
	t.Helper()
	start := strings.Index(doc, heading)
	if start < 0 {
		t.Fatalf("docs/iam.md has no heading %q", heading)
	}
	rest := doc[start:]
	for i := 0; ; i++ {
		open := strings.Index(rest, "```json\n")
		if open < 0 {
			t.Fatalf("docs/iam.md has no JSON block %d after %q", n, heading)
		}
		rest = rest[open+len("```json\n"):]
		block := strings.TrimSpace(rest[:strings.Index(rest, "```")])
		if i == n {
			var out map[string]any
			if err := json.Unmarshal([]byte(block), &out); err != nil {
				t.Fatalf("docs/iam.md JSON block %d after %q: %v", n, heading, err)
			}
			return out
		}
	}
}

// cfnEval evaluates a CloudFormation template node for given parameters: !Ref, !Sub, !If,
// !Equals, !Not, !Join and the template's Conditions; !GetAtt and a !Ref of a resource are
// kept as "<Ref Name>" and "<GetAtt Name.Attr>".
type cfnEval struct {
	t      *testing.T
	params map[string]any // strings, or []any of strings for CommaDelimitedList
	conds  map[string]*yaml.Node
}

func (e *cfnEval) condition(name string) bool {
	n, ok := e.conds[name]
	if !ok {
		e.t.Fatalf("template has no condition %q", name)
	}
	b, ok := e.eval(n).(bool)
	if !ok {
		e.t.Fatalf("condition %q is no boolean", name)
	}
	return b
}

var cfnSubRef = regexp.MustCompile(`\$\{([^}]+)\}`)

func (e *cfnEval) eval(n *yaml.Node) any {
	t := e.t
	args := func(want int) []*yaml.Node {
		if n.Kind != yaml.SequenceNode || len(n.Content) != want {
			t.Fatalf("line %d: %s takes a list of %d", n.Line, n.Tag, want)
		}
		return n.Content
	}
	switch n.Tag {
	case "!Ref":
		if v, ok := e.params[n.Value]; ok {
			return v
		}
		if n.Value == "AWS::AccountId" {
			return tfAccount
		}
		return "<Ref " + n.Value + ">"
	case "!GetAtt":
		return "<GetAtt " + n.Value + ">"
	case "!Sub":
		return cfnSubRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			v, ok := e.params[m[2:len(m)-1]].(string)
			if !ok {
				t.Fatalf("line %d: !Sub of %s, no string parameter", n.Line, m)
			}
			return v
		})
	case "!If":
		a := args(3)
		if e.condition(a[0].Value) {
			return e.eval(a[1])
		}
		return e.eval(a[2])
	case "!Equals":
		a := args(2)
		return fmt.Sprint(e.eval(a[0])) == fmt.Sprint(e.eval(a[1]))
	case "!Not":
		return !e.eval(args(1)[0]).(bool)
	case "!Join":
		a := args(2)
		var parts []string
		for _, p := range e.eval(a[1]).([]any) {
			parts = append(parts, p.(string))
		}
		return strings.Join(parts, a[0].Value)
	}
	if strings.HasPrefix(n.Tag, "!") && !strings.HasPrefix(n.Tag, "!!") {
		t.Fatalf("line %d: %s is not evaluated here", n.Line, n.Tag)
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			out[n.Content[i].Value] = e.eval(n.Content[i+1])
		}
		return out
	case yaml.SequenceNode:
		out := []any{}
		for _, c := range n.Content {
			out = append(out, e.eval(c))
		}
		return out
	}
	var v any
	if err := n.Decode(&v); err != nil {
		t.Fatalf("line %d: %v", n.Line, err)
	}
	if i, ok := v.(int); ok {
		return float64(i) // as encoding/json decodes numbers
	}
	return v
}

func cfnTemplate(t *testing.T) *yaml.RNode {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "docs", "eventbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := yaml.Parse(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func cfnLookup(t *testing.T, doc *yaml.RNode, path ...string) *yaml.Node {
	t.Helper()
	n, err := doc.Pipe(yaml.Lookup(path...))
	if err != nil || n == nil {
		t.Fatalf("template has no %v (%v)", path, err)
	}
	return n.YNode()
}

// The rules of the module (keys of local.rules) and of the template, and the event kind each
// delivers to the receiver.
var tfRules = map[string]struct {
	cfn  string
	kind eventbridge.EventKind
}{
	"codebuild":      {"CodeBuildRule", receiver.CodeBuildStateChange},
	"ecr":            {"EcrRule", receiver.ECRImageAction},
	"ecs-deployment": {"EcsDeploymentRule", controllers.ECSDeploymentStateChange},
	"ecs-hook":       {"EcsHookRule", controllers.ECSHookStateChange},
}

type tfCase struct {
	namespace  string
	codebuild  []string
	ecr        []string
	deployment bool
	hooks      bool
}

func (c tfCase) String() string {
	return fmt.Sprintf("namespace=%q codebuild=%v ecr=%v deployment=%v hooks=%v", c.namespace, c.codebuild, c.ecr, c.deployment, c.hooks)
}

func tfList(s []string) cty.Value {
	if len(s) == 0 {
		return cty.ListValEmpty(cty.String)
	}
	var vs []cty.Value
	for _, e := range s {
		vs = append(vs, cty.StringVal(e))
	}
	return cty.ListVal(vs)
}

// cfnList is a CommaDelimitedList parameter's value: CloudFormation splits "" into [""].
func cfnList(s []string) []any {
	out := []any{}
	for _, e := range s {
		out = append(out, e)
	}
	if len(out) == 0 {
		out = append(out, "")
	}
	return out
}

const (
	tfReceiverURL = "https://autodeploy.example.com"
	tfAPIKey      = "0123456789abcdef0123456789abcdef"
)

// TestTerraformModuleMatchesTheTemplateAndTheReceiver holds deploy/terraform against
// docs/eventbridge.yaml and the receiver, for every combination of the senders: the same rules
// with the same event patterns, the same routes and header, retries and dead-letter queue.
func TestTerraformModuleMatchesTheTemplateAndTheReceiver(t *testing.T) {
	g := NewWithT(t)
	m := loadTerraform(t, filepath.Join("..", "deploy", "terraform"))
	doc := cfnTemplate(t)
	conds := map[string]*yaml.Node{}
	condsNode := cfnLookup(t, doc, "Conditions")
	for i := 0; i < len(condsNode.Content); i += 2 {
		conds[condsNode.Content[i].Value] = condsNode.Content[i+1]
	}
	resources := cfnLookup(t, doc, "Resources")
	var cfnRules []string
	for i := 0; i < len(resources.Content); i += 2 {
		name := resources.Content[i].Value
		if typ, _ := yaml.NewRNode(resources.Content[i+1]).Pipe(yaml.Lookup("Type")); typ != nil && typ.YNode().Value == "AWS::Events::Rule" {
			cfnRules = append(cfnRules, name)
		}
	}
	var wantRules []string
	for _, r := range tfRules {
		wantRules = append(wantRules, r.cfn)
	}
	g.Expect(cfnRules).To(ConsistOf(wantRules), "the template's rules are the module's")

	var cases []tfCase
	for _, ns := range []string{"", "shop"} {
		for _, cb := range [][]string{nil, {"shop-api-build", "shop-web-build"}} {
			for _, ecr := range [][]string{nil, {"team/shop-api"}} {
				for _, dep := range []bool{false, true} {
					for _, hooks := range []bool{false, true} {
						cases = append(cases, tfCase{ns, cb, ecr, dep, hooks})
					}
				}
			}
		}
	}
	for _, c := range cases {
		ctx := m.context(t, map[string]cty.Value{
			"receiver_url": cty.StringVal(tfReceiverURL), "namespace": cty.StringVal(c.namespace),
			"api_key": cty.StringVal(tfAPIKey), "codebuild_projects": tfList(c.codebuild),
			"ecr_repositories": tfList(c.ecr), "ecs_deployment_events": cty.BoolVal(c.deployment),
			"ecs_pause_hooks": cty.BoolVal(c.hooks),
		})
		cfn := &cfnEval{t: t, conds: conds, params: map[string]any{
			"ReceiverUrl": tfReceiverURL, "Namespace": c.namespace, "ApiKey": tfAPIKey,
			"CodeBuildProjects": cfnList(c.codebuild), "EcrRepositories": cfnList(c.ecr),
			"EcsDeploymentEvents": fmt.Sprint(c.deployment), "EcsPauseHooks": fmt.Sprint(c.hooks),
		}}

		// The route: the receiver's namespaced or cluster-wide events path.
		route := receiver.EventsPath
		if c.namespace != "" {
			route = strings.Replace(receiver.NamespacedEventsPath, "{namespace}", c.namespace, 1)
		}
		dest := m.resource(t, "aws_cloudwatch_event_api_destination.receiver")
		endpoint := tfString(t, tfAttr(t, dest, "invocation_endpoint", ctx))
		g.Expect(endpoint).To(Equal(tfReceiverURL+route), "%s", c)
		g.Expect(cfn.eval(cfnLookup(t, doc, "Resources", "ApiDestination", "Properties", "InvocationEndpoint"))).To(Equal(endpoint), "%s", c)

		// The rules that exist, and what they match.
		got := map[string]any{}
		for it := ctx.Variables["local"].GetAttr("enabled_rules").ElementIterator(); it.Next(); {
			k, rule := it.Element()
			r, ok := tfRules[k.AsString()]
			g.Expect(ok).To(BeTrue(), "rule %s of the module delivers no event kind the receiver takes", k.AsString())
			var pattern map[string]any
			g.Expect(json.Unmarshal([]byte(tfString(t, rule.GetAttr("event_pattern"))), &pattern)).To(Succeed())
			g.Expect(pattern["source"]).To(Equal([]any{r.kind.Source}), "%s %s", k.AsString(), c)
			g.Expect(pattern["detail-type"]).To(Equal([]any{r.kind.DetailType}), "%s %s", k.AsString(), c)
			got[r.cfn] = map[string]any{"pattern": pattern, "description": tfString(t, rule.GetAttr("description"))}
		}
		want := map[string]any{}
		for _, name := range cfnRules {
			cond := cfnLookup(t, doc, "Resources", name, "Condition").Value
			if !cfn.condition(cond) {
				continue
			}
			want[name] = map[string]any{
				"pattern":     cfn.eval(cfnLookup(t, doc, "Resources", name, "Properties", "EventPattern")),
				"description": cfn.eval(cfnLookup(t, doc, "Resources", name, "Properties", "Description")),
			}
		}
		g.Expect(got).To(Equal(want), "%s", c)
		n := 0
		for _, on := range []bool{len(c.codebuild) > 0, len(c.ecr) > 0, c.deployment, c.hooks} {
			if on {
				n++
			}
		}
		g.Expect(got).To(HaveLen(n), "one rule per sender asked for: %s", c)
	}

	// The ECS deployment rule passes exactly the events that end a rollout.
	ctx := m.context(t, map[string]cty.Value{"receiver_url": cty.StringVal(tfReceiverURL), "api_key": cty.StringVal(tfAPIKey)})
	var pattern struct {
		Detail struct {
			EventName []string `json:"eventName"`
		} `json:"detail"`
	}
	rules := ctx.Variables["local"].GetAttr("rules")
	g.Expect(json.Unmarshal([]byte(tfString(t, rules.GetAttr("ecs-deployment").GetAttr("event_pattern"))), &pattern)).To(Succeed())
	g.Expect(pattern.Detail.EventName).To(ConsistOf(ecssim.EventDeploymentCompleted, ecssim.EventDeploymentFailed))

	// The connection sends the key in the receiver's header.
	conn := m.resource(t, "aws_cloudwatch_event_connection.receiver")
	connProps := []string{"Resources", "Connection", "Properties"}
	g.Expect(tfString(t, tfAttr(t, conn, "authorization_type", ctx))).To(Equal("API_KEY"))
	g.Expect(cfnConst(t, doc, append(connProps, "AuthorizationType")...)).To(Equal("API_KEY"))
	apiKey := tfBlock(t, tfBlock(t, conn, "auth_parameters"), "api_key")
	g.Expect(tfString(t, tfAttr(t, apiKey, "key", ctx))).To(Equal(receiver.APIKeyHeader))
	g.Expect(cfnConst(t, doc, append(connProps, "AuthParameters", "ApiKeyAuthParameters", "ApiKeyName")...)).To(Equal(receiver.APIKeyHeader))
	g.Expect(tfString(t, tfAttr(t, apiKey, "value", ctx))).To(Equal(tfAPIKey))

	dest := m.resource(t, "aws_cloudwatch_event_api_destination.receiver")
	destProps := []string{"Resources", "ApiDestination", "Properties"}
	g.Expect(tfString(t, tfAttr(t, dest, "connection_arn", ctx))).To(Equal(tfFake("aws_cloudwatch_event_connection.receiver", "arn")))
	g.Expect(tfString(t, tfAttr(t, dest, "http_method", ctx))).To(Equal(cfnConst(t, doc, append(destProps, "HttpMethod")...)))
	g.Expect(tfGo(t, tfAttr(t, dest, "invocation_rate_limit_per_second", ctx))).To(Equal(cfnConst(t, doc, append(destProps, "InvocationRateLimitPerSecond")...)))

	// Every rule's target: the API destination, with the template's retry policy and the
	// dead-letter queue.
	rule := m.resource(t, "aws_cloudwatch_event_rule.this")
	g.Expect(tfRef(t, rule.Body.Attributes["for_each"].Expr)).To(Equal("local.enabled_rules"))
	g.Expect(tfRef(t, rule.Body.Attributes["event_pattern"].Expr)).To(Equal("each.value.event_pattern"))
	target := m.resource(t, "aws_cloudwatch_event_target.this")
	g.Expect(tfRef(t, target.Body.Attributes["for_each"].Expr)).To(Equal("aws_cloudwatch_event_rule.this"))
	g.Expect(tfRef(t, target.Body.Attributes["rule"].Expr)).To(Equal("each.value.name"))
	g.Expect(tfString(t, tfAttr(t, target, "arn", ctx))).To(Equal(tfFake("aws_cloudwatch_event_api_destination.receiver", "arn")))
	g.Expect(tfString(t, tfAttr(t, target, "role_arn", ctx))).To(Equal(tfFake("aws_iam_role.invoke", "arn")))
	g.Expect(tfString(t, tfAttr(t, tfBlock(t, target, "dead_letter_config"), "arn", ctx))).To(Equal(tfFake("aws_sqs_queue.dead_letter", "arn")))
	retry := tfBlock(t, target, "retry_policy")
	for _, name := range cfnRules {
		targets := cfnConst(t, doc, "Resources", name, "Properties", "Targets").([]any)
		g.Expect(targets).To(HaveLen(1), name)
		cfnTarget := targets[0].(map[string]any)
		g.Expect(cfnTarget["Arn"]).To(Equal("<GetAtt ApiDestination.Arn>"), name)
		g.Expect(cfnTarget["RoleArn"]).To(Equal("<GetAtt InvokeRole.Arn>"), name)
		g.Expect(cfnTarget["DeadLetterConfig"]).To(Equal(map[string]any{"Arn": "<GetAtt DeadLetterQueue.Arn>"}), name)
		g.Expect(cfnTarget["RetryPolicy"]).To(Equal(map[string]any{
			"MaximumRetryAttempts":     tfGo(t, tfAttr(t, retry, "maximum_retry_attempts", ctx)),
			"MaximumEventAgeInSeconds": tfGo(t, tfAttr(t, retry, "maximum_event_age_in_seconds", ctx)),
		}), name)
	}

	// The dead-letter queue keeps events as long, encrypted, and takes them from EventBridge of
	// this account only; EventBridge's role may call the API destination and nothing else.
	dlq := m.resource(t, "aws_sqs_queue.dead_letter")
	dlqProps := []string{"Resources", "DeadLetterQueue", "Properties"}
	g.Expect(tfGo(t, tfAttr(t, dlq, "message_retention_seconds", ctx))).To(Equal(cfnConst(t, doc, append(dlqProps, "MessageRetentionPeriod")...)))
	g.Expect(tfGo(t, tfAttr(t, dlq, "sqs_managed_sse_enabled", ctx))).To(Equal(cfnConst(t, doc, append(dlqProps, "SqsManagedSseEnabled")...)))
	g.Expect(tfString(t, tfAttr(t, m.resource(t, "aws_sqs_queue_policy.dead_letter"), "policy", ctx))).To(Equal(tfFake("data.aws_iam_policy_document.dead_letter", "json")))
	g.Expect(tfString(t, tfAttr(t, m.resource(t, "aws_sqs_queue_policy.dead_letter"), "queue_url", ctx))).To(Equal(tfFake("aws_sqs_queue.dead_letter", "id")))

	cfnPolicy := func(path ...string) []any {
		doc := cfnConst(t, doc, path...).(map[string]any)
		for _, st := range doc["Statement"].([]any) {
			if r, ok := st.(map[string]any)["Resource"].(string); ok {
				// The template names its resources; the module names them by address.
				st.(map[string]any)["Resource"] = map[string]string{
					"<GetAtt DeadLetterQueue.Arn>": tfFake("aws_sqs_queue.dead_letter", "arn"),
					"<GetAtt ApiDestination.Arn>":  tfFake("aws_cloudwatch_event_api_destination.receiver", "arn"),
				}[r]
			}
		}
		return iamNormalizePolicy(doc["Statement"].([]any))
	}
	g.Expect(iamNormalizePolicy(tfPolicy(t, m.dataSource(t, "aws_iam_policy_document.dead_letter"), ctx))).To(Equal(
		cfnPolicy("Resources", "DeadLetterQueuePolicy", "Properties", "PolicyDocument")))
	g.Expect(iamNormalizePolicy(tfPolicy(t, m.dataSource(t, "aws_iam_policy_document.invoke_trust"), ctx))).To(Equal(
		cfnPolicy("Resources", "InvokeRole", "Properties", "AssumeRolePolicyDocument")))
	g.Expect(iamNormalizePolicy(tfPolicy(t, m.dataSource(t, "aws_iam_policy_document.invoke"), ctx))).To(Equal(
		cfnPolicy("Resources", "InvokeRole", "Properties", "Policies", "[PolicyName=invoke-autodeploy]", "PolicyDocument")))
	invoke := m.resource(t, "aws_iam_role.invoke")
	g.Expect(tfString(t, tfAttr(t, invoke, "assume_role_policy", ctx))).To(Equal(tfFake("data.aws_iam_policy_document.invoke_trust", "json")))
	invokePolicy := m.resource(t, "aws_iam_role_policy.invoke")
	g.Expect(tfString(t, tfAttr(t, invokePolicy, "policy", ctx))).To(Equal(tfFake("data.aws_iam_policy_document.invoke", "json")))
	g.Expect(tfString(t, tfAttr(t, invokePolicy, "role", ctx))).To(Equal(tfFake("aws_iam_role.invoke", "id")))

	// The aws provider is pinned to a major version.
	g.Expect(m.terraform).To(HaveLen(1))
	providers := tfBlock(t, m.terraform[0], "required_providers")
	aws := tfAttr(t, providers, "aws", nil)
	g.Expect(aws.GetAttr("source").AsString()).To(Equal("hashicorp/aws"))
	g.Expect(aws.GetAttr("version").AsString()).To(MatchRegexp(`^~> \d+\.\d+$`))
}

// cfnConst evaluates a part of the template that depends on no parameter.
func cfnConst(t *testing.T, doc *yaml.RNode, path ...string) any {
	t.Helper()
	e := &cfnEval{t: t, params: map[string]any{}, conds: map[string]*yaml.Node{}}
	return e.eval(cfnLookup(t, doc, path...))
}

// tfRef returns the reference an expression is, such as "local.rules".
func tfRef(t *testing.T, expr hclsyntax.Expression) string {
	t.Helper()
	tr, diags := hcl.AbsTraversalForExpr(expr)
	if diags.HasErrors() {
		t.Fatalf("%v is no reference: %v", expr.Range(), diags)
	}
	var parts []string
	for _, step := range tr {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			parts = append(parts, s.Name)
		case hcl.TraverseAttr:
			parts = append(parts, s.Name)
		default:
			t.Fatalf("%v: unexpected step %T", expr.Range(), step)
		}
	}
	return strings.Join(parts, ".")
}

// TestTerraformControllerRoleIsTheDocumentedPolicy holds the controller's role in
// deploy/terraform against docs/iam.md: the policy, statement for statement with its
// resources and conditions, for the clusters and roles of the documented example; the
// sts:AssumeRole statement for other accounts; and the IRSA and Pod Identity trust policies.
func TestTerraformControllerRoleIsTheDocumentedPolicy(t *testing.T) {
	g := NewWithT(t)
	m := loadTerraform(t, filepath.Join("..", "deploy", "terraform"))
	raw, err := os.ReadFile(filepath.Join("..", "docs", "iam.md"))
	g.Expect(err).NotTo(HaveOccurred())
	iamDoc := string(raw)

	documented := iamJSONBlock(t, iamDoc, "## The policy", 0)
	assume := iamJSONBlock(t, iamDoc, "## Services in other accounts", 0)
	cluster := func(name string) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal(name)})
	}
	var passRoles []string
	for _, st := range documented["Statement"].([]any) {
		if st.(map[string]any)["Action"] == "iam:PassRole" {
			for _, r := range st.(map[string]any)["Resource"].([]any) {
				passRoles = append(passRoles, r.(string))
			}
		}
	}
	g.Expect(passRoles).NotTo(BeEmpty())
	vars := map[string]cty.Value{
		"receiver_url": cty.StringVal(tfReceiverURL), "api_key": cty.StringVal(tfAPIKey),
		"ecs_clusters":       cty.TupleVal([]cty.Value{cluster("staging"), cluster("prod")}),
		"pass_role_arns":     tfList(passRoles),
		"deployer_role_arns": tfList([]string{assume["Resource"].(string)}),
		"oidc_provider_arn":  cty.StringVal("arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"),
	}
	policy := m.dataSource(t, "aws_iam_policy_document.controller")
	got := iamNormalizePolicy(tfPolicy(t, policy, m.context(t, vars)))
	want := iamNormalizePolicy(append(documented["Statement"].([]any), assume))
	g.Expect(got).To(Equal(want))

	// The ECS actions are exactly the calls of controllers.ECSAPI and ecs:TagResource.
	api := reflect.TypeFor[controllers.ECSAPI]()
	wantECS := []string{"ecs:TagResource"}
	for i := range api.NumMethod() {
		wantECS = append(wantECS, "ecs:"+api.Method(i).Name)
	}
	var gotECS []string
	for _, st := range got {
		for _, a := range st.(map[string]any)["Action"].([]any) {
			if strings.HasPrefix(a.(string), "ecs:") {
				gotECS = append(gotECS, a.(string))
			}
		}
	}
	sort.Strings(gotECS)
	g.Expect(gotECS).To(ConsistOf(wantECS))

	// Without pause-hook answers and other accounts, those statements go.
	vars["allow_pause_hook_answers"] = cty.False
	vars["deployer_role_arns"] = cty.ListValEmpty(cty.String)
	var sids []any
	for _, st := range tfPolicy(t, policy, m.context(t, vars)) {
		sids = append(sids, st.(map[string]any)["Sid"])
	}
	g.Expect(sids).To(Equal([]any{"ReadAndUpdateServices", "FollowServiceDeployments", "ReadAndRegisterTaskDefinitions",
		"CopyTagsOntoNewRevisions", "PassTaskAndExecutionRoles"}))

	// The role carries that policy and trusts the service account as docs/iam.md says.
	ctx := m.context(t, vars)
	role := m.resource(t, "aws_iam_role.controller")
	g.Expect(tfString(t, tfAttr(t, role, "assume_role_policy", ctx))).To(Equal(tfFake("data.aws_iam_policy_document.controller_trust", "json")))
	rolePolicy := m.resource(t, "aws_iam_role_policy.controller")
	g.Expect(tfString(t, tfAttr(t, rolePolicy, "policy", ctx))).To(Equal(tfFake("data.aws_iam_policy_document.controller", "json")))
	g.Expect(tfString(t, tfAttr(t, rolePolicy, "role", ctx))).To(Equal(tfFake("aws_iam_role.controller[0]", "id")))
	trust := m.dataSource(t, "aws_iam_policy_document.controller_trust")
	irsa := iamJSONBlock(t, iamDoc, "## Attach with IRSA", 0)
	g.Expect(iamNormalizePolicy(tfPolicy(t, trust, ctx))).To(Equal(iamNormalizePolicy(irsa["Statement"].([]any))))
	vars["oidc_provider_arn"] = cty.NullVal(cty.String)
	vars["pod_identity"] = cty.True
	podIdentity := iamJSONBlock(t, iamDoc, "## Attach with EKS Pod Identity", 0)
	g.Expect(iamNormalizePolicy(tfPolicy(t, trust, m.context(t, vars)))).To(Equal(iamNormalizePolicy(podIdentity["Statement"].([]any))))

	// The Pod Identity association binds the role to the service account config/default makes.
	assoc := m.resource(t, "aws_eks_pod_identity_association.controller")
	vars["eks_cluster_name"] = cty.StringVal("my-cluster")
	ctx = m.context(t, vars)
	g.Expect(tfGo(t, tfAttr(t, assoc, "count", ctx))).To(Equal(float64(1)))
	g.Expect(tfString(t, tfAttr(t, assoc, "namespace", ctx))).To(Equal("autodeploy-system"))
	g.Expect(tfString(t, tfAttr(t, assoc, "service_account", ctx))).To(Equal("autodeploy-controller-manager"))
	g.Expect(tfString(t, tfAttr(t, assoc, "role_arn", ctx))).To(Equal(tfFake("aws_iam_role.controller[0]", "arn")))
}

// TestTerraformVariablesAreDocumented checks that every variable of deploy/terraform has a
// description and a row in the module's README, and that the README lists no other.
func TestTerraformVariablesAreDocumented(t *testing.T) {
	g := NewWithT(t)
	m := loadTerraform(t, filepath.Join("..", "deploy", "terraform"))
	raw, err := os.ReadFile(filepath.Join("..", "deploy", "terraform", "README.md"))
	g.Expect(err).NotTo(HaveOccurred())
	var documented []string
	for _, row := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(string(raw), -1) {
		documented = append(documented, row[1])
	}
	var declared []string
	for name, b := range m.variables {
		declared = append(declared, name)
		g.Expect(tfString(t, tfAttr(t, b, "description", nil))).NotTo(BeEmpty(), name)
	}
	g.Expect(documented).To(ConsistOf(declared))
}
