package docs_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	// The packages fragments may use; importing them here keeps them in
	// go.mod, so the test finds their export data.
	_ "github.com/anthropics/anthropic-sdk-go/v2"
	_ "github.com/benbjohnson/clock"
	_ "github.com/nodus/circuitbreaker/engine/prometheus"
	_ "github.com/nodus/circuitbreaker/engine/redisfleet"
	_ "github.com/nodus/circuitbreaker/llm/anthropic"
	_ "github.com/nodus/circuitbreaker/llm/openai"
	_ "github.com/openai/openai-go/v3"
	_ "github.com/openai/openai-go/v3/option"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/sony/gobreaker/v2"
)

// qualifiers maps the package names fragments may use to import paths.
var qualifiers = map[string]string{
	"context":      "context",
	"errors":       "errors",
	"fmt":          "fmt",
	"log":          "log",
	"slog":         "log/slog",
	"http":         "net/http",
	"os":           "os",
	"strings":      "strings",
	"time":         "time",
	"clock":        "github.com/benbjohnson/clock",
	"engine":       "github.com/nodus/circuitbreaker/engine",
	"llm":          "github.com/nodus/circuitbreaker/llm",
	"cbprom":       "github.com/nodus/circuitbreaker/engine/prometheus",
	"redisfleet":   "github.com/nodus/circuitbreaker/engine/redisfleet",
	"llmopenai":    "github.com/nodus/circuitbreaker/llm/openai",
	"llmanthropic": "github.com/nodus/circuitbreaker/llm/anthropic",
	"prometheus":   "github.com/prometheus/client_golang/prometheus",
	"promhttp":     "github.com/prometheus/client_golang/prometheus/promhttp",
	"redis":        "github.com/redis/go-redis/v9",
	"gobreaker":    "github.com/sony/gobreaker/v2",
	"openai":       "github.com/openai/openai-go/v3",
	"option":       "github.com/openai/openai-go/v3/option",
	"anthropic":    "github.com/anthropics/anthropic-sdk-go/v2",
}

// prelude is what a fragment has in scope, as the parameters of the
// function it becomes the body of.
const prelude = `ctx context.Context, b *engine.Breaker, e *engine.Engine, err error,
	callUpstream func(context.Context) error, msgs []llm.Message,
	providerClient, openaiClient, anthropicClient llm.Client,
	registry *prometheus.Registry, rdb *redis.Client`

// preludeImports are the packages the prelude itself names.
var preludeImports = []string{"context", "engine", "llm", "prometheus", "redis"}

// block is one fenced code block of a Markdown file.
type block struct {
	file    string // relative to the repository root
	line    int    // of the first line of code
	info    string // the fence's info string
	example string // "path Name" from an example marker right before it
	code    string
}

// document is a Markdown file of the repository.
type document struct {
	path   string // relative to the repository root
	blocks []block
	links  []link
	slugs  map[string]bool // anchors of its headings
}

type link struct {
	line   int
	target string
}

const root = ".."

var (
	exampleMarker = regexp.MustCompile(`^<!-- example: (\S+) (\S+) -->$`)
	mdLink        = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	inlineCode    = regexp.MustCompile("`[^`]*`")
)

func documents(t *testing.T) []document {
	t.Helper()
	paths := []string{"README.md"}
	more, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	for _, p := range more {
		rel, err := filepath.Rel(root, p)
		require.NoError(t, err)
		paths = append(paths, filepath.ToSlash(rel))
	}
	var docs []document
	for _, p := range paths {
		docs = append(docs, parseDocument(t, p))
	}
	return docs
}

func parseDocument(t *testing.T, path string) document {
	t.Helper()
	f, err := os.Open(filepath.Join(root, path))
	require.NoError(t, err)
	defer f.Close()

	d := document{path: path, slugs: map[string]bool{}}
	seen := map[string]int{}
	var cur *block
	var code strings.Builder
	prev := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if cur != nil {
			if strings.HasPrefix(trimmed, "```") && strings.Trim(trimmed, "`") == "" {
				cur.code = code.String()
				d.blocks = append(d.blocks, *cur)
				cur = nil
			} else {
				code.WriteString(line)
				code.WriteByte('\n')
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			cur = &block{file: path, line: n + 1, info: strings.TrimSpace(strings.TrimLeft(trimmed, "`"))}
			if m := exampleMarker.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.example = m[1] + " " + m[2]
			}
			code.Reset()
			prev = line
			continue
		}
		if strings.HasPrefix(line, "#") {
			// GitHub's anchors: lower case, punctuation dropped, spaces to
			// dashes, repeats numbered.
			s := slug(strings.TrimSpace(strings.TrimLeft(line, "#")))
			if k := seen[s]; k > 0 {
				d.slugs[fmt.Sprintf("%s-%d", s, k)] = true
			} else {
				d.slugs[s] = true
			}
			seen[s]++
		}
		for _, m := range mdLink.FindAllStringSubmatch(inlineCode.ReplaceAllString(line, ""), -1) {
			d.links = append(d.links, link{line: n, target: m[1]})
		}
		prev = line
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s: a code block is never closed", path)
	return d
}

func slug(heading string) string {
	heading = inlineCode.ReplaceAllStringFunc(heading, func(s string) string { return strings.Trim(s, "`") })
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestLinks(t *testing.T) {
	docs := documents(t)
	byPath := map[string]document{}
	for _, d := range docs {
		byPath[d.path] = d
	}
	checked := 0
	for _, d := range docs {
		for _, l := range d.links {
			if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
				continue
			}
			checked++
			where := fmt.Sprintf("%s:%d: link %q", d.path, l.line, l.target)
			file, anchor, _ := strings.Cut(l.target, "#")
			target := d.path
			if file != "" {
				target = filepath.ToSlash(filepath.Join(filepath.Dir(d.path), file))
				_, err := os.Stat(filepath.Join(root, target))
				if !assertNoError(t, err, where) {
					continue
				}
			}
			if anchor == "" {
				continue
			}
			td, ok := byPath[target]
			if !ok {
				t.Errorf("%s: an anchor into a file that is not a checked document", where)
				continue
			}
			if !td.slugs[anchor] {
				t.Errorf("%s: %s has no heading with anchor #%s", where, target, anchor)
			}
		}
	}
	require.NotZero(t, checked, "no relative links found: the parser is broken")
}

func assertNoError(t *testing.T, err error, where string) bool {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return false
	}
	return true
}

// TestExamples checks that every block marked as an example is the body of
// that Example function, so the documents show code that runs with the tests.
func TestExamples(t *testing.T) {
	for _, d := range documents(t) {
		for _, bl := range d.blocks {
			if bl.example == "" {
				continue
			}
			path, name, _ := strings.Cut(bl.example, " ")
			body, err := funcBody(filepath.Join(root, path), name)
			if err != nil {
				t.Errorf("%s:%d: %v", bl.file, bl.line, err)
				continue
			}
			if !strings.HasPrefix(name, "Example") {
				t.Errorf("%s:%d: %s is not an Example function, so it does not run", bl.file, bl.line, name)
			}
			if body != bl.code {
				t.Errorf("%s:%d: the block differs from the body of %s in %s:\n%s", bl.file, bl.line, name, path, diff(bl.code, body))
			}
		}
	}
}

// funcBody returns the lines between a function's braces, less one tab.
func funcBody(path, name string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
	if err != nil {
		return "", err
	}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Name.Name != name || fn.Recv != nil {
			continue
		}
		start := fset.Position(fn.Body.Lbrace).Offset
		end := fset.Position(fn.Body.Rbrace).Offset
		inner := string(src[start+1 : end])
		inner = strings.TrimPrefix(inner, "\n")
		var b strings.Builder
		for line := range strings.Lines(inner) {
			b.WriteString(strings.TrimPrefix(line, "\t"))
		}
		return b.String(), nil
	}
	return "", fmt.Errorf("no function %s in %s", name, path)
}

func diff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("first difference at line %d of the block:\n  doc:  %q\n  code: %q", i+1, gl, wl)
		}
	}
	return "(whitespace only)"
}

// TestGoBlocks type-checks every Go block against the current API.
func TestGoBlocks(t *testing.T) {
	type unit struct {
		bl      block
		src     string
		offset  int // lines the wrapper adds before the block's first line
		imports []string
	}
	var units []unit
	for _, d := range documents(t) {
		for _, bl := range d.blocks {
			lang, _, _ := strings.Cut(bl.info, " ")
			if lang != "go" || bl.info == "go excerpt" || bl.example != "" {
				continue
			}
			if strings.HasPrefix(strings.TrimSpace(bl.code), "package ") {
				units = append(units, unit{bl: bl, src: bl.code})
				continue
			}
			src, offset, imports := wrap(bl.code)
			units = append(units, unit{bl: bl, src: src, offset: offset, imports: imports})
		}
	}
	require.NotEmpty(t, units, "no Go blocks found: the parser is broken")

	// Parse everything first: the imports decide which export data to load.
	fset := token.NewFileSet()
	files := make([]*ast.File, len(units))
	need := map[string]bool{}
	for i, u := range units {
		f, err := parser.ParseFile(fset, fmt.Sprintf("%s:%d", u.bl.file, u.bl.line), u.src, 0)
		if err != nil {
			t.Errorf("%s", relocate(err.Error(), u.bl.line, u.offset))
			continue
		}
		files[i] = f
		for _, imp := range f.Imports {
			need[strings.Trim(imp.Path.Value, `"`)] = true
		}
	}
	exports := exportData(t, need)
	imp := importer.ForCompiler(fset, "gc", func(path string) (io.ReadCloser, error) {
		file, ok := exports[path]
		if !ok {
			return nil, fmt.Errorf("%s is not a dependency of the docs module: import it in docs_test.go", path)
		}
		return os.Open(file)
	})
	for i, f := range files {
		if f == nil {
			continue
		}
		u := units[i]
		conf := types.Config{
			Importer: imp,
			Error: func(err error) {
				if te, ok := err.(types.Error); ok && te.Soft {
					return // unused variables and imports: fine in a fragment
				}
				t.Errorf("%s", relocate(err.Error(), u.bl.line, u.offset))
			},
		}
		_, _ = conf.Check("snippet", fset, []*ast.File{f}, nil)
	}
	t.Logf("type-checked %d Go blocks", len(units))
}

// wrap makes a fragment the body of a function with the prelude in scope.
// The fragment sits in a block of its own so it may redeclare prelude names.
func wrap(code string) (src string, offset int, imports []string) {
	used := map[string]bool{}
	for _, q := range preludeImports {
		used[q] = true
	}
	for q := range qualifiers {
		if regexp.MustCompile(`\b` + q + `\.`).MatchString(code) {
			used[q] = true
		}
	}
	for q := range used {
		imports = append(imports, q)
	}
	sort.Strings(imports)
	var b bytes.Buffer
	b.WriteString("package snippet\n\nimport (\n")
	for _, q := range imports {
		fmt.Fprintf(&b, "\t%s %q\n", q, qualifiers[q])
	}
	fmt.Fprintf(&b, ")\n\nfunc _(%s) error {\n{\n", prelude)
	offset = strings.Count(b.String(), "\n")
	b.WriteString(code)
	b.WriteString("}\nreturn nil\n}\n")
	return b.String(), offset, imports
}

var position = regexp.MustCompile(`^(\S+?):(\d+):(\d+):(\d+)`)

// relocate turns a position in the wrapped source into the Markdown line.
func relocate(msg string, first, offset int) string {
	m := position.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	var line, col int
	fmt.Sscan(m[3], &line)
	fmt.Sscan(m[4], &col)
	file, _, _ := strings.Cut(m[1], ":")
	return fmt.Sprintf("%s:%d:%d%s", file, first+line-1-offset, col, msg[len(m[0]):])
}

// exportData builds the packages and returns their export data files.
func exportData(t *testing.T, need map[string]bool) map[string]string {
	t.Helper()
	args := []string{"list", "-export", "-deps", "-json=ImportPath,Export"}
	for p := range need {
		args = append(args, p)
	}
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go list: %s", stderr.String())
	exports := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p struct{ ImportPath, Export string }
		require.NoError(t, dec.Decode(&p))
		if p.Export != "" {
			exports[p.ImportPath] = p.Export
		}
	}
	return exports
}

// TestNamedTests checks that every test, benchmark, example or fuzz target
// the documents name in backticks exists, so tables of which test guards
// what cannot point at tests that were renamed or removed.
func TestNamedTests(t *testing.T) {
	funcs := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Example|Fuzz)\w*)\(`)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllSubmatch(src, -1) {
			funcs[string(m[1])] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, funcs)

	named := regexp.MustCompile("`((?:Test|Benchmark|Example|Fuzz)[A-Z_]\\w*)`")
	checked := 0
	for _, d := range documents(t) {
		src, err := os.ReadFile(filepath.Join(root, d.path))
		require.NoError(t, err)
		for i, line := range strings.Split(string(src), "\n") {
			for _, m := range named.FindAllStringSubmatch(line, -1) {
				checked++
				if !funcs[m[1]] {
					t.Errorf("%s:%d: no function %s in any test file", d.path, i+1, m[1])
				}
			}
		}
	}
	require.NotZero(t, checked, "no test names found: the pattern is broken")
}
