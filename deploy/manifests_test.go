// Package deploy holds no code, only the tests that keep echod's deployment
// files honest: every Kubernetes manifest decodes strictly into the API
// types, and the systemd units pass systemd's own verifier.
package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// newObject returns an empty object of the API type for apiVersion and kind,
// or nil for a kind these manifests are not expected to hold.
func newObject(apiVersion, kind string) any {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "v1 Service":
		return &corev1.Service{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "batch/v1 Job":
		return &batchv1.Job{}
	}
	return nil
}

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// decodeStrict decodes every YAML document of data into its API type. A
// field the type does not have, a duplicate field or a kind not known here
// is an error.
func decodeStrict(data []byte) ([]any, error) {
	var objects []any
	for i, doc := range docSeparator.Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			return nil, fmt.Errorf("document %d: unexpected apiVersion %q kind %q", i, tm.APIVersion, tm.Kind)
		}
		// YAML to JSON (refusing duplicate keys), then JSON into the type
		// the way the API server reads it: field names match case-sensitively
		// (encoding/json would accept readOnlyRootFileSystem) and unknown
		// fields are errors.
		js, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		strict, err := kjson.UnmarshalStrict(js, obj)
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, err)
		}
		if len(strict) > 0 {
			return nil, fmt.Errorf("document %d (%s): %w", i, tm.Kind, errors.Join(strict...))
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

// loadManifests decodes every manifest in kubernetes/.
func loadManifests(t *testing.T) []any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in kubernetes/: %v", err)
	}
	var all []any
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objects, err := decodeStrict(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		all = append(all, objects...)
	}
	return all
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objects := loadManifests(t)
	kinds := map[string]int{}
	for _, o := range objects {
		kinds[fmt.Sprintf("%T", o)]++
	}
	for _, want := range []string{"*v1.Deployment", "*v1.Service", "*v1.PodDisruptionBudget", "*v2.HorizontalPodAutoscaler", "*v1.Job"} {
		if kinds[want] != 1 {
			t.Errorf("want exactly one %s among the manifests, have %d", want, kinds[want])
		}
	}
}

// The strict decoder is what catches typos; prove that it does.
func TestDecodeStrictRejectsMistakes(t *testing.T) {
	tests := []struct {
		name, doc string
	}{
		{"misspelt field", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailabel: 1}\n"},
		{"wrong case", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {MaxUnavailable: 1}\n"},
		{"duplicate field", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailable: 1, maxUnavailable: 2}\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n"},
		{"unknown kind", "apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeStrict([]byte(tt.doc)); err == nil {
				t.Fatalf("decoded without error:\n%s", tt.doc)
			}
		})
	}
	if objs, err := decodeStrict([]byte("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailable: 1}\n---\n")); err != nil || len(objs) != 1 {
		t.Fatalf("a valid document: %d objects, %v", len(objs), err)
	}
}

// The pieces must fit together: what the Service, the budget and the
// autoscaler select is the Deployment, the probes hit echod's endpoints, and
// the grace period outlasts preStop plus echod's drain.
func TestManifestsFitTogether(t *testing.T) {
	var (
		dep *appsv1.Deployment
		svc *corev1.Service
		pdb *policyv1.PodDisruptionBudget
		hpa *autoscalingv2.HorizontalPodAutoscaler
	)
	for _, o := range loadManifests(t) {
		switch o := o.(type) {
		case *appsv1.Deployment:
			dep = o
		case *corev1.Service:
			svc = o
		case *policyv1.PodDisruptionBudget:
			pdb = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpa = o
		}
	}
	if dep == nil || svc == nil || pdb == nil || hpa == nil {
		t.Fatal("a manifest is missing")
	}
	pod := dep.Spec.Template
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if pod.Labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not have", what, k, v)
			}
		}
	}
	selects("the Deployment", dep.Spec.Selector.MatchLabels)
	selects("the Service", svc.Spec.Selector)
	selects("the PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != dep.Name {
		t.Errorf("the autoscaler targets %s %s, not the Deployment %s", ref.Kind, ref.Name, dep.Name)
	}

	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, have %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	for _, sp := range svc.Spec.Ports {
		cp, ok := ports[sp.TargetPort.String()]
		if sp.TargetPort.Type != intstr.String || !ok || cp.Protocol != sp.Protocol {
			t.Errorf("Service port %s targets %s/%s, which the container does not expose", sp.Name, sp.TargetPort.String(), sp.Protocol)
		}
		if sp.Name == "admin" || sp.TargetPort.String() == "admin" {
			t.Errorf("Service exposes the admin port; keep it private")
		}
	}
	probe := func(what string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe must GET %s on the admin port, is %+v", what, path, p)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/healthz")

	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod must run as a non-root user")
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the container must forbid privilege escalation and have a read-only root")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("the container must request CPU and memory (the autoscaler needs the CPU request)")
	}

	var preStop time.Duration
	if ls := c.Lifecycle; ls != nil && ls.PreStop != nil && ls.PreStop.Sleep != nil {
		preStop = time.Duration(ls.PreStop.Sleep.Seconds) * time.Second
	} else {
		t.Error("want a preStop sleep so load balancers stop sending before echod stops accepting")
	}
	drain := 10 * time.Second // echod's default -shutdown-timeout
	for i, a := range c.Args {
		if a == "-shutdown-timeout" && i+1 < len(c.Args) {
			d, err := time.ParseDuration(c.Args[i+1])
			if err != nil {
				t.Fatalf("-shutdown-timeout %q: %v", c.Args[i+1], err)
			}
			drain = d
		}
	}
	grace := 30 * time.Second // Kubernetes' default
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if grace <= preStop+drain {
		t.Errorf("terminationGracePeriodSeconds (%v) must exceed preStop (%v) plus -shutdown-timeout (%v)", grace, preStop, drain)
	}
}

// systemd-analyze verify reads the units as systemd would; an unknown key or
// a bad value shows up in its output even when it exits 0.
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze")
	dir := t.TempDir()
	for _, name := range []string{"echod.socket", "echod.service"} {
		data, err := os.ReadFile(filepath.Join("systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		// verify checks that ExecStart's program exists; echod is not
		// installed here, so point it at a program that is.
		data = bytes.ReplaceAll(data, []byte("/usr/local/bin/echod"), []byte("/bin/true"))
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(analyze, "verify", "./echod.socket", "./echod.service")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The sandbox keeps its score: exposure 1.5 or less of 10 (--threshold
	// counts in tenths). What remains is the network an echo server needs.
	cmd = exec.Command(analyze, "security", "--offline=true", "--threshold=15", "./echod.service")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
}

// requireTool returns the path of a program the test drives, skipping the
// test when it is missing unless ECHOD_REQUIRE_TOOLS=1.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("ECHOD_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (ECHOD_REQUIRE_TOOLS=1) but not found: %v", name, err)
	}
	t.Skipf("%s not found; install it to run this test", name)
	return ""
}
