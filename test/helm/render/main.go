// Command render renders a Helm chart the way `helm template` does, for the chart's tests. There is no helm
// binary on the machines that run them, but Go's text/template and sprig (the two things Helm templates are
// made of) come as Debian packages, so this program is the part of Helm the tests need, built offline:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render main.go
//	render -chart helm/regmirror [-f override.yaml]... [-release NAME] [-namespace NS] [-api-versions a/v1,b/v1]
//	       [-upgrade] [-lookup objects.yaml] [-notes]
//
// It prints every rendered manifest as a YAML stream, each document preceded by `# Source: <chart>/templates/<file>`
// as `helm template` does (or, with -notes, the rendered NOTES.txt). What it reproduces of Helm, and nothing more:
//   - values: values.yaml, then each -f file coalesced over it (maps merged key by key, lists and scalars
//     replaced, a null deleting the key); numbers become float64, as Helm's YAML-to-JSON decoding makes them;
//   - every file under templates/ is parsed into one template set, so `define`d templates are visible to all;
//     files whose name starts with `_` only define, NOTES.txt is rendered only with -notes;
//   - Helm's functions on top of sprig's TxtFuncMap: include, tpl, required, toYaml, fromYaml, fromJson,
//     fromYamlArray, fromJsonArray, lookup (finds objects of the -lookup file, else returns an empty map, as
//     `helm template` does); sprig's env and expandenv removed;
//   - the built-in objects .Values, .Release, .Chart, .Capabilities (APIVersions.Has, KubeVersion), .Files.Get
//     and .Template (Name, BasePath);
//   - missing map keys print nothing ("<no value>" removed), output split on `---`, empty documents dropped.
//
// The YAML that toYaml writes comes from gopkg.in/yaml.v3 (Helm uses yaml.v2 through sigs.k8s.io/yaml): the
// same data, only sequences under a key are indented by two more spaces. Any error exits 1 with Helm's wording
// where it matters to a chart author (`execution error at (...): message`).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var valueFiles listFlag
	chartDir := flag.String("chart", "", "chart directory (with Chart.yaml)")
	flag.Var(&valueFiles, "f", "values file coalesced over values.yaml (repeatable, later wins)")
	release := flag.String("release", "regmirror", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	apiVersions := flag.String("api-versions", "", "extra API versions for .Capabilities.APIVersions, comma-separated")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version for .Capabilities.KubeVersion")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	lookupFile := flag.String("lookup", "", "YAML stream of objects that `lookup` finds")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	flag.Parse()
	if *chartDir == "" {
		fail(errors.New("-chart is required"))
	}
	out, err := render(options{
		chartDir: *chartDir, valueFiles: valueFiles, release: *release, namespace: *namespace,
		apiVersions: splitList(*apiVersions), kubeVersion: *kubeVersion, upgrade: *upgrade,
		lookupFile: *lookupFile, notes: *notes,
	})
	if err != nil {
		fail(err)
	}
	fmt.Print(out)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

type options struct {
	chartDir, release, namespace, kubeVersion, lookupFile string
	valueFiles, apiVersions                               []string
	upgrade, notes                                        bool
}

// chartMetadata has the field names Helm's chart.Metadata gives templates (.Chart.Name, .Chart.AppVersion, ...).
type chartMetadata struct {
	APIVersion  string            `yaml:"apiVersion"`
	Name        string            `yaml:"name"`
	Version     string            `yaml:"version"`
	AppVersion  string            `yaml:"appVersion"`
	KubeVersion string            `yaml:"kubeVersion"`
	Description string            `yaml:"description"`
	Type        string            `yaml:"type"`
	Home        string            `yaml:"home"`
	Icon        string            `yaml:"icon"`
	Keywords    []string          `yaml:"keywords"`
	Sources     []string          `yaml:"sources"`
	Annotations map[string]string `yaml:"annotations"`
}

// files is .Files: the chart's own files outside templates/, read on demand; a missing one reads as "".
type files struct{ root string }

func (f files) Get(name string) string {
	clean := filepath.Clean(name)
	if strings.HasPrefix(clean, "..") || filepath.IsAbs(clean) || strings.HasPrefix(clean, "templates"+string(filepath.Separator)) {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(f.root, clean))
	if err != nil {
		return ""
	}
	return string(b)
}

// apiVersions is .Capabilities.APIVersions; Has takes "group/version" or "group/version/Kind".
type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct{ Version, Major, Minor, GitVersion string }

type capabilities struct {
	APIVersions apiVersions
	KubeVersion kubeVersion
	HelmVersion map[string]string
}

// The API versions of a plain cluster (Helm's defaults); CRDs' versions are added with -api-versions.
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2",
	"rbac.authorization.k8s.io/v1", "storage.k8s.io/v1", "apiextensions.k8s.io/v1", "coordination.k8s.io/v1",
}

func render(o options) (string, error) {
	meta, err := readChart(o.chartDir)
	if err != nil {
		return "", err
	}
	values, err := readValues(o.chartDir, o.valueFiles)
	if err != nil {
		return "", err
	}
	lookups, err := readLookups(o.lookupFile)
	if err != nil {
		return "", err
	}
	names, sources, err := readTemplates(o.chartDir, meta.Name)
	if err != nil {
		return "", err
	}
	kv := strings.TrimPrefix(o.kubeVersion, "v")
	parts := strings.SplitN(kv, ".", 3)
	for len(parts) < 2 {
		parts = append(parts, "0")
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": o.release, "Namespace": o.namespace, "Service": "Helm", "Revision": 1,
			"IsInstall": !o.upgrade, "IsUpgrade": o.upgrade,
		},
		"Chart": meta,
		"Capabilities": capabilities{
			APIVersions: append(append(apiVersions{}, defaultAPIVersions...), o.apiVersions...),
			KubeVersion: kubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1], GitVersion: "v" + kv},
			HelmVersion: map[string]string{"Version": "v3.15.0"},
		},
		"Files": files{root: o.chartDir},
	}

	root := template.New("chart").Option("missingkey=zero")
	root.Funcs(funcMap(root, lookups))
	for _, name := range names {
		if _, err := root.New(name).Parse(sources[name]); err != nil {
			return "", err
		}
	}

	var out strings.Builder
	for _, name := range names {
		base := filepath.Base(name)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != o.notes {
			continue
		}
		data := copyTop(top)
		data["Template"] = map[string]interface{}{"Name": name, "BasePath": meta.Name + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", helmError(err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if o.notes {
			out.WriteString(text)
			continue
		}
		for _, doc := range splitManifests(text) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	return out.String(), nil
}

func copyTop(top map[string]interface{}) map[string]interface{} {
	c := make(map[string]interface{}, len(top)+1)
	for k, v := range top {
		c[k] = v
	}
	return c
}

// helmError words a `fail` or `required` error the way Helm does (`execution error at (FILE:LINE:COL): message`),
// so a test's expected message reads like helm's.
var callError = regexp.MustCompile(`^template: (\S+?): executing ".*?" at <.*?>: error calling \w+: (.*)$`)

func helmError(err error) error {
	if m := callError.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("execution error at (%s): %s", m[1], m[2])
	}
	return err
}

// splitManifests is Helm's releaseutil.SplitManifests: documents separated by `---` lines, blank ones dropped.
var separator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

func splitManifests(text string) []string {
	var docs []string
	for _, d := range separator.Split(text, -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, strings.TrimSpace(d))
		}
	}
	return docs
}

func readChart(dir string) (chartMetadata, error) {
	var m chartMetadata
	b, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return m, err
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("Chart.yaml: %w", err)
	}
	if m.Name == "" || m.Version == "" {
		return m, errors.New("Chart.yaml: name and version are required")
	}
	return m, nil
}

// readTemplates returns every file under templates/, named `<chart>/templates/<path>` as Helm names them.
func readTemplates(dir, chart string) ([]string, map[string]string, error) {
	sources := map[string]string{}
	tdir := filepath.Join(dir, "templates")
	err := filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tdir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sources[chart+"/templates/"+filepath.ToSlash(rel)] = string(b)
		return nil
	})
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, sources, err
}

func readValues(dir string, overrides []string) (map[string]interface{}, error) {
	values, err := readYAMLMap(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range overrides {
		over, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		values = coalesce(values, over)
	}
	return values, nil
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := jsonLike(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a mapping", path)
	}
	return m, nil
}

// jsonLike turns decoded YAML into what Helm's values are after its YAML-to-JSON decoding: string keys,
// and every number a float64 (which is why templates write `int .Values.x` and `%d` needs a conversion).
func jsonLike(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = jsonLike(e)
		}
		return x
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonLike(e)
		}
		return m
	case []interface{}:
		for i, e := range x {
			x[i] = jsonLike(e)
		}
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	default:
		return v
	}
}

// coalesce merges src over dst as Helm merges a values file over the chart's: maps key by key, a null in src
// deleting the key, anything else replaced whole.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		dm, dIsMap := dst[k].(map[string]interface{})
		sm, sIsMap := sv.(map[string]interface{})
		if dIsMap && sIsMap {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

func readLookups(path string) ([]map[string]interface{}, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var objs []map[string]interface{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v interface{}
		if err := dec.Decode(&v); err != nil {
			if err.Error() == "EOF" {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if m, ok := jsonLike(v).(map[string]interface{}); ok {
			objs = append(objs, m)
		}
	}
}

// funcMap is sprig's plus the functions Helm adds; include and tpl work on the chart's template set.
func funcMap(root *template.Template, lookups []map[string]interface{}) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env") // Helm removes these: a chart must not depend on the environment of whoever renders it
	delete(f, "expandenv")
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	f["toYaml"] = toYAML
	f["fromYaml"] = func(s string) map[string]interface{} {
		var v interface{}
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := jsonLike(v).(map[string]interface{})
		if m == nil {
			m = map[string]interface{}{}
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		var v []interface{}
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return []interface{}{err.Error()}
		}
		return jsonLike(v).([]interface{})
	}
	f["fromJsonArray"] = func(s string) []interface{} {
		var v []interface{}
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			return []interface{}{err.Error()}
		}
		return v
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		return m
	}
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		var found []interface{}
		for _, o := range lookups {
			md, _ := o["metadata"].(map[string]interface{})
			if o["apiVersion"] != apiVersion || o["kind"] != kind || md == nil {
				continue
			}
			if (namespace == "" || md["namespace"] == namespace) && (name == "" || md["name"] == name) {
				found = append(found, o)
			}
		}
		if name != "" {
			if len(found) == 0 {
				return map[string]interface{}{}, nil
			}
			return found[0].(map[string]interface{}), nil
		}
		return map[string]interface{}{"items": found}, nil
	}
	return f
}

// toYAML is Helm's toYaml: through JSON first (so the output is what the object's JSON form says: struct tags,
// integral numbers without a fraction), then YAML, without the final newline.
func toYAML(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var data interface{}
	if err := dec.Decode(&data); err != nil {
		return ""
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(numbers(data)); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func numbers(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []interface{}:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}
