package bench

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/autodeploy-dev/autodeploy/internal/taskdef"
)

// poller models the cron autodeploy replaces. Every interval, for each Environment, it asks
// ECR for the newest image of the application's repository and ECS what the service runs
// (DescribeServices, DescribeTaskDefinition); when they differ it registers a revision with the
// newest image and updates the service. It knows nothing of pins (so it reverts rollbacks), and
// on any error, ThrottlingException included (after the SDK's own retries), it skips that
// Environment until the next tick. A tick that overruns the next one makes the cron skip it
// (concurrencyPolicy: Forbid).
type poller struct {
	clients  map[string]accountClients // by account
	fleet    *fleet
	workers  int
	interval time.Duration // real time

	mu    sync.Mutex
	ticks []tickStat
}

// accountClients are the cron's clients in one account.
type accountClients struct {
	ecs *ecs.Client
	ecr *ecr.Client
}

type tickStat struct {
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration"`
	Skipped  int           `json:"skipped"` // Environments skipped after an error
	Deployed int           `json:"deployed"`
}

func (p *poller) run(ctx context.Context) {
	next := time.Now()
	for {
		if err := sleepUntil(ctx, next); err != nil {
			return
		}
		st := p.tick(ctx)
		if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.ticks = append(p.ticks, st)
		p.mu.Unlock()
		for next = next.Add(p.interval); !next.After(time.Now()); next = next.Add(p.interval) {
		}
	}
}

func (p *poller) stats() []tickStat {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]tickStat(nil), p.ticks...)
}

func (p *poller) tick(ctx context.Context) tickStat {
	st := tickStat{Start: time.Now()}
	jobs := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				deployed, err := p.check(ctx, p.fleet.Envs[i])
				mu.Lock()
				if err != nil {
					st.Skipped++
				} else if deployed {
					st.Deployed++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range p.fleet.Envs {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	st.Duration = time.Since(st.Start)
	return st
}

// check brings one Environment's service to the newest image of its repository.
func (p *poller) check(ctx context.Context, e envSpec) (bool, error) {
	cl := p.clients[e.Account]
	newest, err := p.newestImage(ctx, cl.ecr, e.App)
	if err != nil {
		return false, err
	}
	svcs, err := cl.ecs.DescribeServices(ctx, &ecs.DescribeServicesInput{Cluster: aws.String(e.Cluster), Services: []string{e.Service}})
	if err != nil {
		return false, err
	}
	if len(svcs.Services) != 1 {
		return false, errors.New("service not found")
	}
	td, err := cl.ecs.DescribeTaskDefinition(ctx, &ecs.DescribeTaskDefinitionInput{
		TaskDefinition: svcs.Services[0].TaskDefinition,
		Include:        []types.TaskDefinitionField{types.TaskDefinitionFieldTags},
	})
	if err != nil {
		return false, err
	}
	running, err := taskdef.Image(td.TaskDefinition, container)
	if err != nil {
		return false, err
	}
	if running == newest {
		return false, nil
	}
	in, err := taskdef.RegisterInput(td.TaskDefinition, td.Tags, container, newest)
	if err != nil {
		return false, err
	}
	reg, err := cl.ecs.RegisterTaskDefinition(ctx, in)
	if err != nil {
		return false, err
	}
	_, err = cl.ecs.UpdateService(ctx, &ecs.UpdateServiceInput{
		Cluster: aws.String(e.Cluster), Service: aws.String(e.Service),
		TaskDefinition: reg.TaskDefinition.TaskDefinitionArn,
	})
	return err == nil, err
}

// newestImage returns the reference of the most recently pushed tagged image of repo.
func (p *poller) newestImage(ctx context.Context, client *ecr.Client, repo string) (string, error) {
	var newest string
	var at time.Time
	pages := ecr.NewDescribeImagesPaginator(client, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return "", err
		}
		for _, d := range page.ImageDetails {
			if len(d.ImageTags) == 0 || d.ImagePushedAt == nil {
				continue
			}
			if !d.ImagePushedAt.Before(at) {
				at, newest = *d.ImagePushedAt, imageRef(repo, d.ImageTags[0])
			}
		}
	}
	if newest == "" {
		return "", errors.New("no tagged image")
	}
	return newest, nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
