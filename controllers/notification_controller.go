package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	deployv1 "github.com/autodeploy-dev/autodeploy/api/v1alpha1"
	"github.com/autodeploy-dev/autodeploy/internal/metrics"
	"github.com/autodeploy-dev/autodeploy/internal/notification"
)

// ReasonDeliveryRejected: the endpoint refused an outcome for good (HTTP 400 or 422); it was
// given up so that later outcomes are told.
const ReasonDeliveryRejected = "DeliveryRejected"

// NotificationReconciler tells the outcomes of the Environments a Notification selects to its
// provider. It runs in its own controller and workqueue: a slow or failing endpoint never
// delays a deploy. What happened is read from the Environments' status and what was delivered
// from the Notification's, so a restart loses nothing; delivery is at least once, with
// exponential backoff between failed attempts.
type NotificationReconciler struct {
	// Client reads Notifications and Environments from the cache and writes status.
	Client client.Client
	// APIReader reads Secrets (never cached) and a Notification whose cached status is older
	// than the last one this reconciler wrote.
	APIReader client.Reader
	// Sender posts to the endpoints.
	Sender *notification.Sender
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// RetryBaseDelay and RetryMaxDelay bound the backoff after a failed delivery; 2s and 10m
	// when zero.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// MaxConcurrentReconciles bounds parallel Notifications; 2 when zero.
	MaxConcurrentReconciles int
	// InScope reports whether this manager handles a namespace's Notifications (a sharded
	// manager sees only its shard's Environments); nil: every namespace.
	InScope func(namespace string) bool

	// written holds, per Notification, the resourceVersion of the last status this reconciler
	// wrote, to tell a cache that has not caught up (its status would deliver again).
	written sync.Map
}

// +kubebuilder:rbac:groups=deploy.autodeploy.dev,resources=notifications,verbs=get;list;watch
// +kubebuilder:rbac:groups=deploy.autodeploy.dev,resources=notifications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// SetupWithManager registers the reconciler: a Notification is reconciled when its spec
// changes and when an Environment of its namespace changes.
func (r *NotificationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.Sender == nil || r.Sender.HTTP == nil {
		return errors.New("NotificationReconciler needs Client, APIReader and a Sender with an HTTP client")
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.RetryBaseDelay == 0 {
		r.RetryBaseDelay = 2 * time.Second
	}
	if r.RetryMaxDelay == 0 {
		r.RetryMaxDelay = 10 * time.Minute
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 2
	}
	inScope := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return r.InScope == nil || r.InScope(o.GetNamespace())
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("notification").
		For(&deployv1.Notification{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}, inScope)).
		Watches(&deployv1.Environment{}, handler.EnqueueRequestsFromMapFunc(r.notificationsOf)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// notificationsOf maps an Environment to the Notifications of its namespace that select it
// (it is called with the old and the new object of an update, so a label change that
// unselects one reaches it too).
func (r *NotificationReconciler) notificationsOf(ctx context.Context, obj client.Object) []reconcile.Request {
	list := &deployv1.NotificationList{}
	if err := r.Client.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
		log.FromContext(ctx).Error(err, "Listing Notifications failed", "namespace", obj.GetNamespace())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		n := &list.Items[i]
		sel, err := metav1.LabelSelectorAsSelector(&n.Spec.EnvironmentSelector)
		if err != nil || !sel.Matches(labels.Set(obj.GetLabels())) {
			continue
		}
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(n)})
	}
	return reqs
}

// Reconcile delivers what is due for one Notification.
func (r *NotificationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	n := &deployv1.Notification{}
	if err := r.Client.Get(ctx, req.NamespacedName, n); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rv, ok := r.written.Load(req.NamespacedName); ok && rv.(string) != n.ResourceVersion {
		// The cache may not show what this reconciler delivered last: read it live.
		cached := n.ResourceVersion
		if err := r.APIReader.Get(ctx, req.NamespacedName, n); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if n.ResourceVersion == cached {
			// The cache holds the newest (another writer's change came after this
			// reconciler's write): the next reconciles read it alone.
			r.written.Delete(req.NamespacedName)
		}
	}
	if !n.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	base := n.DeepCopy()
	res, err := r.reconcile(ctx, n)
	n.Status.ObservedGeneration = n.Generation
	if equality.Semantic.DeepEqual(base.Status, n.Status) {
		return res, err
	}
	if perr := r.Client.Status().Patch(ctx, n, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); perr != nil {
		if apierrors.IsConflict(perr) {
			// Another writer changed it: start over from what it wrote.
			return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(perr)
	}
	r.written.Store(req.NamespacedName, n.ResourceVersion)
	return res, err
}

func (r *NotificationReconciler) setReady(n *deployv1.Notification, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&n.Status.Conditions, metav1.Condition{
		Type: deployv1.ReadyCondition, Status: status, Reason: reason, Message: msg, ObservedGeneration: n.Generation,
	})
	stalled := metav1.ConditionFalse
	if reason == deployv1.ReasonInvalidNotification {
		stalled = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&n.Status.Conditions, metav1.Condition{
		Type: deployv1.StalledCondition, Status: stalled, Reason: reason, Message: msg, ObservedGeneration: n.Generation,
	})
}

// backoff is how long after the last failure the next attempt waits.
func (r *NotificationReconciler) backoff(failures int32) time.Duration {
	d := r.RetryBaseDelay
	for i := int32(1); i < failures && d < r.RetryMaxDelay; i++ {
		d *= 2
	}
	return min(d, r.RetryMaxDelay)
}

// waitLeft is how long the next attempt must still wait, 0 when it may go now.
func (r *NotificationReconciler) waitLeft(n *deployv1.Notification, now time.Time) time.Duration {
	st := &n.Status
	var next time.Time
	if st.Failures > 0 && st.LastFailureTime != nil {
		next = st.LastFailureTime.Add(r.backoff(st.Failures))
	}
	if st.RetryAfter != nil && st.RetryAfter.After(next) {
		next = st.RetryAfter.Time
	}
	if left := next.Sub(now); left > 0 {
		return left
	}
	return 0
}

func (r *NotificationReconciler) failed(n *deployv1.Notification, now time.Time, retryAfter time.Duration, reason, msg string) ctrl.Result {
	st := &n.Status
	st.Failures++
	t := metav1.NewTime(now)
	st.LastFailureTime = &t
	st.RetryAfter = nil
	if retryAfter > 0 {
		ra := metav1.NewTime(now.Add(retryAfter))
		st.RetryAfter = &ra
	}
	wait := max(r.backoff(st.Failures), retryAfter)
	r.setReady(n, metav1.ConditionFalse, reason, fmt.Sprintf("%s (attempt %d); retrying in %s", msg, st.Failures, wait.Round(time.Millisecond)))
	return ctrl.Result{RequeueAfter: wait}
}

func (r *NotificationReconciler) reconcile(ctx context.Context, n *deployv1.Notification) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	sel, err := metav1.LabelSelectorAsSelector(&n.Spec.EnvironmentSelector)
	if err != nil {
		r.setReady(n, metav1.ConditionFalse, deployv1.ReasonInvalidNotification,
			fmt.Sprintf("spec.environmentSelector is invalid: %v", err))
		return ctrl.Result{}, nil
	}
	if n.Spec.Suspend {
		r.setReady(n, metav1.ConditionFalse, "Suspended", "spec.suspend is true: nothing is delivered; what happens meanwhile is delivered on resume")
		return ctrl.Result{}, nil
	}
	now := r.Now()
	if left := r.waitLeft(n, now); left > 0 {
		return ctrl.Result{RequeueAfter: left}, nil
	}
	p, reason, err := r.provider(ctx, n)
	if err != nil {
		if reason == deployv1.ReasonInvalidNotification {
			r.setReady(n, metav1.ConditionFalse, reason, err.Error())
			return ctrl.Result{}, nil
		}
		// A Secret is not watched: it is read again after the backoff.
		return r.failed(n, now, 0, reason, err.Error()), nil
	}
	envs := &deployv1.EnvironmentList{}
	if err := r.Client.List(ctx, envs, client.InNamespace(n.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return ctrl.Result{}, err
	}
	sort.Slice(envs.Items, func(i, j int) bool { return envs.Items[i].Name < envs.Items[j].Name })

	records := map[string]*deployv1.NotifiedEnvironment{}
	for i := range n.Status.Environments {
		records[n.Status.Environments[i].Name] = &n.Status.Environments[i]
	}
	var kept []deployv1.NotifiedEnvironment
	var failure *notification.Error
	var failedOutcome notification.Outcome
	delivered, skipped := 0, ""
	rejected := ""
	for i := range envs.Items {
		env := &envs.Items[i]
		rec := records[env.Name]
		if rec == nil {
			rec = &deployv1.NotifiedEnvironment{Name: env.Name}
		}
		rec = rec.DeepCopy()
		var due []notification.Outcome
		for _, o := range notification.Derive(env, n.CreationTimestamp.Time) {
			if notification.Wanted(n.Spec.Outcomes, o.Type) {
				due = append(due, o)
			}
		}
		done := map[string]bool{}
		for _, k := range rec.Delivered {
			done[k] = true
		}
		for _, o := range due {
			if done[o.Key] || failure != nil {
				continue
			}
			d := notification.Delivery{Outcome: o, Repository: env.Annotations[deployv1.GitHubRepositoryAnnotation]}
			for _, gd := range rec.GitHubDeployments {
				if gd.Key == o.GitHubKey {
					d.GitHubDeployment = gd.ID
				}
			}
			logger.V(1).Info("Delivering a notification", "environment", env.Name, "outcome", o.Type, "key", o.Key)
			res, err := r.Sender.Send(ctx, p, d)
			if res.GitHubDeployment != 0 && d.GitHubDeployment == 0 {
				rec.GitHubDeployments = append(rec.GitHubDeployments, deployv1.GitHubDeployment{Key: o.GitHubKey, ID: res.GitHubDeployment})
				if len(rec.GitHubDeployments) > deployv1.MaxGitHubDeployments {
					rec.GitHubDeployments = rec.GitHubDeployments[len(rec.GitHubDeployments)-deployv1.MaxGitHubDeployments:]
				}
			}
			var de *notification.Error
			switch {
			case err == nil && res.Skipped != "":
				metrics.Notifications.WithLabelValues(p.Type, "skipped").Inc()
				skipped = fmt.Sprintf("%s of %s not told: %s", o.Type, env.Name, res.Skipped)
			case err == nil:
				metrics.Notifications.WithLabelValues(p.Type, "delivered").Inc()
				delivered++
			case errors.As(err, &de) && de.Rejected:
				metrics.Notifications.WithLabelValues(p.Type, "rejected").Inc()
				logger.Info("The endpoint refused a notification for good", "environment", env.Name, "outcome", o.Type, "error", err.Error())
				rejected = fmt.Sprintf("%s of %s was refused and given up: %v", o.Type, env.Name, err)
			default:
				metrics.Notifications.WithLabelValues(p.Type, "failed").Inc()
				logger.Info("Delivering a notification failed", "environment", env.Name, "outcome", o.Type, "error", err.Error())
				if de == nil {
					de = &notification.Error{Msg: err.Error()}
				}
				failure, failedOutcome = de, o
				continue
			}
			rec.Delivered = append(rec.Delivered, o.Key)
			done[o.Key] = true
		}
		rec.Delivered, rec.GitHubDeployments = prune(rec, due)
		if len(rec.Delivered) > 0 || len(rec.GitHubDeployments) > 0 {
			kept = append(kept, *rec)
		}
	}
	n.Status.Environments = kept
	if delivered > 0 {
		t := metav1.NewTime(now)
		n.Status.LastDeliveryTime = &t
	}
	if failure != nil {
		return r.failed(n, now, failure.RetryAfter, deployv1.ReasonDeliveryFailed,
			fmt.Sprintf("Delivering %s of Environment %s failed: %s", failedOutcome.Type, failedOutcome.Environment, failure.Msg)), nil
	}
	n.Status.Failures, n.Status.LastFailureTime, n.Status.RetryAfter = 0, nil, nil
	switch {
	case rejected != "":
		r.setReady(n, metav1.ConditionFalse, ReasonDeliveryRejected, rejected)
	case delivered > 0 || !isReason(n, ReasonDeliveryRejected):
		msg := "Every outcome due was delivered"
		if skipped != "" {
			msg += "; " + skipped
		}
		if c := meta.FindStatusCondition(n.Status.Conditions, deployv1.ReadyCondition); skipped == "" && delivered == 0 && c != nil && c.Status == metav1.ConditionTrue {
			msg = c.Message // keep the last word about a skip until something is delivered
		}
		r.setReady(n, metav1.ConditionTrue, deployv1.ReasonDelivered, msg)
	}
	return ctrl.Result{}, nil
}

func isReason(n *deployv1.Notification, reason string) bool {
	c := meta.FindStatusCondition(n.Status.Conditions, deployv1.ReadyCondition)
	return c != nil && c.Reason == reason
}

// prune keeps the delivered keys still derivable from the Environment (an outcome no longer
// derivable can never be due again) and the GitHub deployments of its builds, both bounded.
func prune(rec *deployv1.NotifiedEnvironment, due []notification.Outcome) ([]string, []deployv1.GitHubDeployment) {
	live, gh := map[string]bool{}, map[string]bool{}
	for _, o := range due {
		live[o.Key] = true
		gh[o.GitHubKey] = true
	}
	var keys []string
	for _, k := range rec.Delivered {
		if live[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) > deployv1.MaxDeliveredKeys {
		keys = keys[len(keys)-deployv1.MaxDeliveredKeys:]
	}
	var deps []deployv1.GitHubDeployment
	for _, d := range rec.GitHubDeployments {
		if gh[d.Key] {
			deps = append(deps, d)
		}
	}
	return keys, deps
}

// provider reads the provider's Secret and checks its address. The reason says whether a
// failure is the spec's (InvalidNotification) or the Secret's (SecretNotReadable).
func (r *NotificationReconciler) provider(ctx context.Context, n *deployv1.Notification) (notification.Provider, string, error) {
	spec := n.Spec.Provider
	p := notification.Provider{Type: spec.Type, Address: spec.Address, Notification: n.Namespace + "/" + n.Name}
	var data map[string][]byte
	if spec.SecretRef != nil {
		s := &corev1.Secret{}
		key := types.NamespacedName{Namespace: n.Namespace, Name: spec.SecretRef.Name}
		if err := r.APIReader.Get(ctx, key, s); err != nil {
			if apierrors.IsNotFound(err) {
				return p, deployv1.ReasonSecretNotReadable, fmt.Errorf("the Secret %s named by spec.provider.secretRef does not exist", spec.SecretRef.Name)
			}
			return p, deployv1.ReasonSecretNotReadable, fmt.Errorf("reading the Secret %s: %v", spec.SecretRef.Name, err)
		}
		data = s.Data
	}
	need := func(k string) ([]byte, error) {
		v := data[k]
		if len(v) == 0 {
			return nil, fmt.Errorf("the Secret %s has no key %q, which the %s provider needs", spec.SecretRef.Name, k, spec.Type)
		}
		return v, nil
	}
	addrFrom := "spec.provider.address"
	switch spec.Type {
	case deployv1.ProviderWebhook:
		if a := data[deployv1.SecretKeyAddress]; len(a) > 0 {
			p.Address, addrFrom = string(a), "the address key of the Secret"
		}
		p.Key = data[deployv1.SecretKeyHMAC]
	case deployv1.ProviderSlack:
		a, err := need(deployv1.SecretKeyAddress)
		if err != nil {
			return p, deployv1.ReasonSecretNotReadable, err
		}
		p.Address, addrFrom = string(a), "the address key of the Secret"
	case deployv1.ProviderGitHub:
		t, err := need(deployv1.SecretKeyToken)
		if err != nil {
			return p, deployv1.ReasonSecretNotReadable, err
		}
		p.Token = string(t)
		if p.Address == "" {
			p.Address = notification.DefaultGitHubAPI
		}
	default:
		return p, deployv1.ReasonInvalidNotification, fmt.Errorf("spec.provider.type %q is not webhook, slack or github", spec.Type)
	}
	u, err := url.Parse(p.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		reason := deployv1.ReasonInvalidNotification
		if addrFrom != "spec.provider.address" {
			reason = deployv1.ReasonSecretNotReadable
		}
		// The address itself is not repeated: a Slack webhook URL is a credential.
		return p, reason, fmt.Errorf("%s is not an http(s) URL with a host", addrFrom)
	}
	return p, "", nil
}
