package devenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// hiddenColumns are printer columns the local run leaves out to keep its lines short: the
// waiting message is told by `autodeployctl why`, and every age is a few seconds.
var hiddenColumns = map[string]bool{"Waiting": true, "Age": true}

// printEnvironments prints the Environments of namespace the way `kubectl get environments
// -o wide` does, without hiddenColumns and with short image names: the API server renders
// the CRD's printer columns as a Table.
func printEnvironments(ctx context.Context, out io.Writer, cfg *rest.Config, namespace string) error {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	url := fmt.Sprintf("%s/apis/deploy.autodeploy.dev/v1alpha1/namespaces/%s/environments", strings.TrimRight(cfg.Host, "/"), namespace)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("listing Environments: %s: %s", resp.Status, b)
	}
	table := &metav1.Table{}
	if err := json.NewDecoder(resp.Body).Decode(table); err != nil {
		return err
	}
	// The table is written in one piece: the webhook receiver prints lines meanwhile.
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 3, ' ', 0)
	var header []string
	for _, c := range table.ColumnDefinitions {
		if !hiddenColumns[c.Name] {
			header = append(header, strings.ToUpper(c.Name))
		}
	}
	fmt.Fprintln(tw, "  "+strings.Join(header, "\t"))
	for _, row := range table.Rows {
		var cells []string
		for i, c := range row.Cells {
			if i < len(table.ColumnDefinitions) && hiddenColumns[table.ColumnDefinitions[i].Name] {
				continue
			}
			if c == nil {
				cells = append(cells, "<none>")
				continue
			}
			cells = append(cells, shortImages(fmt.Sprint(c)))
		}
		fmt.Fprintln(tw, "  "+strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = out.Write(buf.Bytes())
	return err
}

// ECSClient returns an anonymous ECS client for an ECS-compatible endpoint such as the simulator.
func ECSClient(endpoint string) *ecs.Client {
	return ecs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}},
		func(o *ecs.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

// ECSReader is what PrintService asks ECS.
type ECSReader interface {
	DescribeServices(ctx context.Context, in *ecs.DescribeServicesInput, optFns ...func(*ecs.Options)) (*ecs.DescribeServicesOutput, error)
	DescribeTaskDefinition(ctx context.Context, in *ecs.DescribeTaskDefinitionInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTaskDefinitionOutput, error)
}

// PrintService prints the task definition, deployments and container images of a service.
func PrintService(ctx context.Context, out io.Writer, api ECSReader, cluster, service string) error {
	svcs, err := api.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{service}})
	if err != nil {
		return err
	}
	if len(svcs.Services) == 0 {
		return fmt.Errorf("service %s/%s not found", cluster, service)
	}
	svc := svcs.Services[0]
	td, err := api.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{TaskDefinition: svc.TaskDefinition})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  %s/%s  task definition %s:%d\n", cluster, service, aws.ToString(td.TaskDefinition.Family), td.TaskDefinition.Revision)
	for _, d := range svc.Deployments {
		fmt.Fprintf(out, "    deployment %s  %s  %s\n", aws.ToString(d.Id), aws.ToString(d.Status), d.RolloutState)
	}
	containers := append([]types.ContainerDefinition(nil), td.TaskDefinition.ContainerDefinitions...)
	sort.Slice(containers, func(i, j int) bool { return aws.ToString(containers[i].Name) < aws.ToString(containers[j].Name) })
	for _, c := range containers {
		fmt.Fprintf(out, "    container %-12s %s\n", aws.ToString(c.Name), aws.ToString(c.Image))
	}
	return nil
}
