package ecssim

// WithOldServiceARNs makes the simulator name services with the old ARN format,
// arn:aws:ecs:<region>:<account>:service/<name> (no cluster), as ECS does for accounts that
// never opted into the long ARN format. The ARNs appear wherever a service's ARN does:
// DescribeServices, CreateService, UpdateService, ListServices and the deployment events.
// Requests may name services either way.
func WithOldServiceARNs() Option { return func(s *Server) { s.oldServiceARNs = true } }

// serviceARN is the ARN of service name in cluster, in the account's ARN format.
func (a *account) serviceARN(cluster, name string) string {
	if a.srv.oldServiceARNs {
		return a.arn("service/" + name)
	}
	return a.arn("service/" + cluster + "/" + name)
}
