package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// benchJob returns the load generators' Job of bench-job.yaml and the
// Service they target.
func benchJob(t *testing.T) (*batchv1.Job, *corev1.Service) {
	t.Helper()
	var job *batchv1.Job
	var svc *corev1.Service
	for _, o := range loadManifests(t) {
		switch o := o.(type) {
		case *batchv1.Job:
			job = o
		case *corev1.Service:
			svc = o
		}
	}
	if job == nil || svc == nil {
		t.Fatal("no Job or no Service among the manifests")
	}
	return job, svc
}

// The bench Job is an Indexed Job whose pod I runs shard I/N, N agreeing
// with its completions, against the echod Service, printing JSON for
// bench merge.
func TestBenchJobShardsByCompletionIndex(t *testing.T) {
	job, svc := benchJob(t)
	spec := job.Spec
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		t.Fatalf("completionMode %v, want Indexed", spec.CompletionMode)
	}
	if spec.Completions == nil || spec.Parallelism == nil || *spec.Completions != *spec.Parallelism || *spec.Completions < 2 {
		t.Fatalf("completions %v, parallelism %v: want equal, so every shard runs at once", spec.Completions, spec.Parallelism)
	}
	n := *spec.Completions
	// A retried shard would print a second result for its index.
	if spec.BackoffLimitPerIndex == nil || *spec.BackoffLimitPerIndex != 0 {
		t.Errorf("backoffLimitPerIndex %v, want 0", spec.BackoffLimitPerIndex)
	}
	pod := spec.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever || len(pod.Containers) != 1 {
		t.Fatalf("restartPolicy %q with %d containers, want Never and one", pod.RestartPolicy, len(pod.Containers))
	}
	c := pod.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["SHARD_INDEX"]; e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
		e.ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
		t.Errorf("SHARD_INDEX is %+v, want the job-completion-index annotation", e)
	}
	if _, ok := env["START_AT"]; !ok {
		t.Error("no START_AT")
	}
	args := c.Args
	flag := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) {
			t.Errorf("args lack %s: %q", name, args)
			return ""
		}
		return args[i+1]
	}
	if got, want := flag("-shard"), fmt.Sprintf("$(SHARD_INDEX)/%d", n); got != want {
		t.Errorf("-shard %s, want %s (completions is %d)", got, want, n)
	}
	if got := flag("-start-at"); got != "$(START_AT)" {
		t.Errorf("-start-at %s, want $(START_AT)", got)
	}
	if len(args) == 0 || args[0] != "bench" || !slices.Contains(args, "-json") {
		t.Errorf("args %q: want bench ... -json", args)
	}
	// Thresholds belong to bench merge: a shard that failed on one would
	// fail its pod, and a shard's p99 is not the run's.
	for _, a := range args {
		if strings.HasPrefix(a, "-max-") || strings.HasPrefix(a, "-min-") {
			t.Errorf("shard args have threshold %s; apply it in bench merge", a)
		}
	}
	target := args[len(args)-1]
	if want := fmt.Sprintf("%s:%d", svc.Name, svc.Spec.Ports[0].Port); target != want {
		t.Errorf("bench targets %s, want the Service %s", target, want)
	}
	if s := pod.SecurityContext; s == nil || s.RunAsNonRoot == nil || !*s.RunAsNonRoot {
		t.Error("the bench pods may run as root")
	}
}

// benchJobArgs is the Job's echod command line as pod 0 gets it.
func benchJobArgs(t *testing.T) []string {
	job, _ := benchJob(t)
	var args []string
	for _, a := range job.Spec.Template.Spec.Containers[0].Args {
		a = strings.ReplaceAll(a, "$(SHARD_INDEX)", "0")
		a = strings.ReplaceAll(a, "$(START_AT)", "0")
		args = append(args, a)
	}
	return args
}
