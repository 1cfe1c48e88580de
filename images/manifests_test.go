package images_test

// Tests of the manifests under images/: every Kubernetes document decoded strictly against the
// official API types (an unknown or misspelled field fails), a few semantic checks against the
// entrypoint built from this tree, and the compose files through docker-compose config. No
// Docker engine needed. k8s.io/api is imported here, in a _test.go file, only.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"snapvisor/internal/testutil"
	"snapvisor/store/storetest"
)

// kinds are the manifest kinds the test knows, by apiVersion/kind. A kind not here fails the
// test, so that a new manifest is never silently skipped: add its type.
var kinds = map[string]func() any{
	"v1/Secret":                func() any { return &corev1.Secret{} },
	"v1/ConfigMap":             func() any { return &corev1.ConfigMap{} },
	"v1/Service":               func() any { return &corev1.Service{} },
	"v1/PersistentVolumeClaim": func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/Pod":                   func() any { return &corev1.Pod{} },
	"v1/ServiceAccount":        func() any { return &corev1.ServiceAccount{} },
	"apps/v1/StatefulSet":      func() any { return &appsv1.StatefulSet{} },
	"apps/v1/Deployment":       func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":        func() any { return &appsv1.DaemonSet{} },
	"batch/v1/Job":             func() any { return &batchv1.Job{} },
	"batch/v1/CronJob":         func() any { return &batchv1.CronJob{} },
}

// manifestDoc is one document of a manifest file.
type manifestDoc struct {
	file string // relative to images/
	idx  int    // its position in the file, from 0
	body []byte
}

func (d manifestDoc) String() string { return fmt.Sprintf("%s#%d", d.file, d.idx) }

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// splitDocs splits a YAML stream into its non-empty documents (comments-only ones dropped).
func splitDocs(file string, b []byte) []manifestDoc {
	var out []manifestDoc
	for _, part := range docSep.Split(string(b), -1) {
		empty := true
		for _, l := range strings.Split(part, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, manifestDoc{file: file, idx: len(out), body: []byte(part)})
		}
	}
	return out
}

// kubernetesManifests returns every document of every *.yaml under images/kubernetes and of
// every other YAML file under images/ that has a Kubernetes document (apiVersion and kind at
// the top level).
func kubernetesManifests(t *testing.T) []manifestDoc {
	t.Helper()
	dir := filepath.Join(root, "images")
	var docs []manifestDoc
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ds := splitDocs(rel, b)
		if strings.HasPrefix(rel, "kubernetes"+string(filepath.Separator)) {
			docs = append(docs, ds...)
			return nil
		}
		for _, d := range ds {
			var tm struct{ APIVersion, Kind string }
			if yaml.Unmarshal(d.body, &tm) == nil && tm.APIVersion != "" && tm.Kind != "" {
				docs = append(docs, ds...)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no Kubernetes manifest under images/")
	}
	return docs
}

// decodeStrict decodes one document into its API type, refusing unknown fields and duplicate
// keys as the API server does: YAML to JSON (yaml.YAMLToJSONStrict), then sigs.k8s.io/json's
// case-sensitive strict decoder. Not yaml.UnmarshalStrict alone: it decodes with encoding/json,
// which matches field names case-insensitively, so `containerport` passed for containerPort.
func decodeStrict(d manifestDoc) (any, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(d.body, &tm); err != nil {
		return nil, err
	}
	mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q: a kind this test does not know (add its type to kinds)", tm.APIVersion, tm.Kind)
	}
	j, err := yaml.YAMLToJSONStrict(d.body)
	if err != nil {
		return nil, err
	}
	obj := mk()
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return obj, nil
}

// podSpecs returns the pod specs of a workload, with the names of its volumeClaimTemplates.
func podSpecs(obj any) (specs []corev1.PodSpec, claims []string) {
	switch o := obj.(type) {
	case *corev1.Pod:
		specs = append(specs, o.Spec)
	case *appsv1.StatefulSet:
		specs = append(specs, o.Spec.Template.Spec)
		for _, c := range o.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
	case *appsv1.Deployment:
		specs = append(specs, o.Spec.Template.Spec)
	case *appsv1.DaemonSet:
		specs = append(specs, o.Spec.Template.Spec)
	case *batchv1.Job:
		specs = append(specs, o.Spec.Template.Spec)
	case *batchv1.CronJob:
		specs = append(specs, o.Spec.JobTemplate.Spec.Template.Spec)
	}
	return specs, claims
}

// entrypointKnows is what the entrypoint built from this tree knows: the variables `entrypoint
// env` lists (secrets also as NAME_FILE) and the subcommands `entrypoint help` lists.
type entrypointKnows struct {
	vars, subcommands map[string]bool
}

func newEntrypointKnows(t *testing.T, bin string) entrypointKnows {
	t.Helper()
	k := entrypointKnows{vars: map[string]bool{}, subcommands: map[string]bool{}}
	out, err := exec.Command(bin, "env").Output()
	if err != nil {
		t.Fatalf("entrypoint env: %v", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.ToUpper(f[0]) != f[0] || !strings.Contains(f[0], "_") && f[0] != "TZ" {
			continue
		}
		k.vars[f[0]] = true
		if f[1] == "secret" {
			k.vars[f[0]+"_FILE"] = true
		}
	}
	if !k.vars["SNAPVISOR_BACKUP"] {
		t.Fatalf("entrypoint env lists no SNAPVISOR_BACKUP:\n%s", out)
	}
	out, err = exec.Command(bin, "help").Output()
	if err != nil {
		t.Fatalf("entrypoint help: %v", err)
	}
	_, list, _ := strings.Cut(string(out), "Subcommands:")
	list, _, _ = strings.Cut(list, "\n\n")
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			k.subcommands[f[0]] = true
		}
	}
	if !k.subcommands["health"] {
		t.Fatalf("entrypoint help lists no health:\n%s", out)
	}
	return k
}

// checkPod checks what strict decoding cannot: every SNAPVISOR_* variable (and NAME_FILE of a
// secret) is one the entrypoint knows; a command running the entrypoint names a subcommand it
// has or `--` (the service); every volumeMount names a declared volume or claim template.
func checkPod(k entrypointKnows, spec corev1.PodSpec, claims []string) []string {
	var problems []string
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
	}
	for _, c := range claims {
		volumes[c] = true
	}
	containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		for _, e := range c.Env {
			known := k.vars[e.Name]
			if !known && (strings.HasPrefix(e.Name, "SNAPVISOR_") || strings.HasSuffix(e.Name, "_FILE") && k.vars[strings.TrimSuffix(e.Name, "_FILE")]) {
				problems = append(problems, fmt.Sprintf("container %s: env %s is not a variable `entrypoint env` lists", c.Name, e.Name))
			}
		}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				problems = append(problems, fmt.Sprintf("container %s: volumeMount %s names no volume or volumeClaimTemplate", c.Name, m.Name))
			}
		}
		argvs := [][]string{append(append([]string{}, c.Command...), c.Args...)}
		for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if p != nil && p.Exec != nil {
				argvs = append(argvs, p.Exec.Command)
			}
		}
		for _, argv := range argvs {
			if len(argv) == 0 || filepath.Base(argv[0]) != "entrypoint" {
				continue
			}
			if len(argv) < 2 || argv[1] != "--" && !k.subcommands[argv[1]] {
				problems = append(problems, fmt.Sprintf("container %s: %q runs the entrypoint without a subcommand it has or -- before the service", c.Name, argv))
			}
		}
	}
	return problems
}

// TestManifests_Kubernetes: every document of every Kubernetes manifest under images/ decodes
// strictly into its API type and passes the semantic checks; a copy with a misspelled field
// fails to decode; the entrypoint binary does not depend on k8s.io.
func TestManifests_Kubernetes(t *testing.T) {
	docs := kubernetesManifests(t)
	t.Run("Strict", func(t *testing.T) {
		k := newEntrypointKnows(t, buildEntrypoint(t))
		for _, d := range docs {
			obj, err := decodeStrict(d)
			if err != nil {
				t.Errorf("%s: %v", d, err)
				continue
			}
			specs, claims := podSpecs(obj)
			for _, s := range specs {
				for _, p := range checkPod(k, s, claims) {
					t.Errorf("%s: %s", d, p)
				}
			}
		}
	})

	t.Run("MisspelledFieldFails", func(t *testing.T) {
		for _, typo := range []struct{ from, to string }{
			{"volumeMounts:", "volumeMount:"},
			{"containerPort:", "containerport:"},
			{"volumeClaimTemplates:", "volumeClaimTemplate:"},
		} {
			found := false
			for _, d := range docs {
				if !bytes.Contains(d.body, []byte(typo.from)) {
					continue
				}
				found = true
				bad := d
				bad.body = bytes.Replace(d.body, []byte(typo.from), []byte(typo.to), 1)
				// Through a copy on disk, as the manifests are read.
				p := filepath.Join(t.TempDir(), filepath.Base(d.file))
				storetest.MustWrite(t, p, bad.body)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				bad.body = b
				if _, err := decodeStrict(bad); err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(typo.to, ":")) {
					t.Errorf("%s with %s misspelled %s: error %v, want an unknown field error naming it", d, typo.from, typo.to, err)
				}
			}
			if !found {
				t.Errorf("no manifest has %s to misspell", typo.from)
			}
		}
		// An unknown kind fails too.
		if _, err := decodeStrict(manifestDoc{file: "x.yaml", body: []byte("apiVersion: example.com/v1\nkind: Widget\n")}); err == nil {
			t.Error("an unknown kind decoded")
		}
	})

	t.Run("NoK8sInEntrypoint", func(t *testing.T) {
		gobin := os.Getenv("GO")
		if gobin == "" {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "list", "-deps", "./cmd/entrypoint")
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps ./cmd/entrypoint: %v", err)
		}
		for _, p := range strings.Fields(string(out)) {
			if strings.HasPrefix(p, "k8s.io/") || strings.HasPrefix(p, "sigs.k8s.io/") {
				t.Errorf("the entrypoint depends on %s: import k8s.io only from _test.go files", p)
			}
		}
	})
}

// TestManifests_Compose: every compose file under images/compose passes `docker-compose config
// -q` (no engine needed), and a copy with an unknown key fails it.
func TestManifests_Compose(t *testing.T) {
	dc := testutil.RequireTool(t, "docker-compose")
	dir := filepath.Join(root, "images", "compose")
	files, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no compose file in %s: %v", dir, err)
	}
	config := func(dir, file string) (string, error) {
		cmd := exec.Command(dc, "-f", file, "config", "-q")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, f := range files {
		if out, err := config(dir, f); err != nil {
			t.Errorf("docker-compose -f %s config -q: %v\n%s", filepath.Base(f), err, out)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Replace(b, []byte("environment:"), []byte("environmnet:"), 1)
		if bytes.Equal(bad, b) {
			t.Errorf("%s: no environment: key to misspell", filepath.Base(f))
			continue
		}
		// The copy beside the original, so that its build contexts resolve the same way.
		p := filepath.Join(dir, ".broken-"+filepath.Base(f))
		storetest.MustWrite(t, p, bad)
		t.Cleanup(func() { os.Remove(p) })
		if out, err := config(dir, p); err == nil {
			t.Errorf("docker-compose config accepted %s with environment: misspelled:\n%s", filepath.Base(f), out)
		}
	}
}
