package cli

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/explain"
)

func (r *root) listCommand() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "list [-A]",
		Aliases: []string{"get", "ls"},
		Short:   "List Environments with their latest and deployed builds and the reason each is where it is",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return r.list(cmd.Context(), all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List the Environments of every namespace.")
	return cmd
}

func (r *root) list(ctx context.Context, all bool) error {
	if err := r.connect(); err != nil {
		return err
	}
	var list deployv1.EnvironmentList
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(r.ns))
	}
	if err := r.c.List(ctx, &list, opts...); err != nil {
		return r.readError("", err)
	}
	if len(list.Items) == 0 {
		if all {
			fmt.Fprintln(r.errOut(), "No Environments found.")
		} else {
			fmt.Fprintf(r.errOut(), "No Environments found in namespace %s.\n", r.ns)
		}
		return nil
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := &list.Items[i], &list.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	tw := tabwriter.NewWriter(r.out(), 0, 8, 3, ' ', 0)
	if all {
		fmt.Fprint(tw, "NAMESPACE\t")
	}
	fmt.Fprintln(tw, "NAME\tAPPLICATION\tLATEST\tDEPLOYED\tROLLOUT\tREASON")
	for i := range list.Items {
		e := &list.Items[i]
		if all {
			fmt.Fprintf(tw, "%s\t", e.Namespace)
		}
		latest := "<none>"
		if b := e.Status.LatestBuild; b != nil {
			latest = strconv.FormatInt(b.Number, 10)
		}
		deployed := "<none>"
		switch {
		case e.Status.DeployedBuild != nil:
			deployed = strconv.FormatInt(e.Status.DeployedBuild.Number, 10)
		case e.Status.DeployedImage != "":
			deployed = e.Status.DeployedImage
		}
		rollout := orNone(e.Status.Rollout)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Spec.Application, latest, deployed, rollout, explain.Summary(e))
	}
	return tw.Flush()
}

func (r *root) historyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "history <environment>",
		Short: "Show an Environment's deploys: build, image, trigger, result, times and approval",
		Args:  oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			return r.history(cmd.Context(), args[0])
		},
	}
}

func (r *root) history(ctx context.Context, name string) error {
	if err := r.connect(); err != nil {
		return err
	}
	env := &deployv1.Environment{}
	if err := r.c.Get(ctx, r.key(name), env); err != nil {
		return r.readError(name, err)
	}
	st := &env.Status
	if len(st.History) == 0 && st.PendingDeploy == nil {
		fmt.Fprintf(r.out(), "Environment %s has deployed nothing yet.\n", r.envName(env))
		if b := st.LatestBuild; b != nil {
			fmt.Fprintf(r.out(), "Latest build: %d (%s).\n", b.Number, b.Image)
		}
		return nil
	}
	tw := tabwriter.NewWriter(r.out(), 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "BUILD\tIMAGE\tTRIGGER\tRESULT\tSTARTED\tFINISHED\tAPPROVAL\tREASON")
	row := func(d *deployv1.Deploy, result string) {
		build := "<none>"
		if d.Build != nil {
			build = strconv.FormatInt(d.Build.Number, 10)
		}
		if d.RolledBack {
			result += " (rolled back)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", build, images(d), d.Trigger, orNone(result),
			stamp(&d.StartedAt), stamp(d.FinishedAt), orNone(approvalText(d.Approval)), d.Reason)
	}
	if p := st.PendingDeploy; p != nil {
		result := "Pending"
		if p.Result == deployv1.ResultStalled {
			result = deployv1.ResultStalled
		}
		row(p, result)
	}
	for i := range st.History {
		row(&st.History[i], st.History[i].Result)
	}
	return tw.Flush()
}

// approvalText renders the approval a deploy went out with (status.history[].approval): who
// approved and when, as far as the controller could tell; "" for a deploy that needed none.
func approvalText(a *deployv1.Approval) string {
	if a == nil {
		return ""
	}
	when := ""
	if a.At != nil && !a.At.IsZero() {
		when = a.At.UTC().Format("2006-01-02 15:04Z")
	}
	switch {
	case a.By != "" && when != "":
		return a.By + " " + when
	case a.By != "":
		return a.By
	case when != "":
		return "approved " + when
	}
	return "approved"
}

func images(d *deployv1.Deploy) string {
	if len(d.Images) == 0 {
		return d.Image
	}
	return deployv1.JoinImages(d.Images, ",")
}

func stamp(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func (r *root) whyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "why <environment>",
		Short: "Explain in one paragraph why the Environment runs what it runs, or what it waits for",
		Args:  oneEnvironment,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := r.getEnv(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(r.out(), explain.Why(env, r.name, r.now()).Text)
			return nil
		},
	}
}
