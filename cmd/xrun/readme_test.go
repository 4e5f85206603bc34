package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The README's troubleshooting table is the user's index of xrun's errors.
// These tests keep it and the code in step, both ways:
//   - every message the table lists is produced somewhere in the code;
//   - every actionable error the code builds (one that tells the user what
//     to do: "...: install X", "...: use Y") has a row in the table.

// verb matches a format verb of fmt.Errorf.
var verb = regexp.MustCompile(`%[-+# 0-9.*]*[a-zA-Z]`)

// errorFormats returns the format strings of every errors.New, fmt.Errorf
// and newError call in the non-test Go files of the module; with all, every
// string literal of those files (messages built with fmt.Sprintf too).
func errorFormats(t *testing.T, all ...bool) []string {
	t.Helper()
	var formats []string
	root := filepath.Join("..", "..")
	for _, dir := range []string{"cmd", "pkg"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && len(all) > 0 && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						formats = append(formats, s)
					}
					return true
				}
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				var name string
				switch fn := call.Fun.(type) {
				case *ast.SelectorExpr:
					if x, ok := fn.X.(*ast.Ident); ok {
						name = x.Name + "." + fn.Sel.Name
					}
				case *ast.Ident:
					name = fn.Name
				}
				arg := 0
				switch name {
				case "errors.New", "fmt.Errorf":
				case "newError":
					arg = 2
				default:
					return true
				}
				if arg >= len(call.Args) {
					return true
				}
				if lit, ok := call.Args[arg].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						formats = append(formats, s)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return formats
}

// troubleshooting returns the backticked messages of the first column of
// the README's troubleshooting table.
func troubleshooting(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Troubleshooting\n")
	if !ok {
		t.Fatal("README.md has no Troubleshooting section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	tick := regexp.MustCompile("`([^`]+)`")
	var msgs []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) < 3 {
			continue
		}
		for _, m := range tick.FindAllStringSubmatch(cells[0], -1) {
			msgs = append(msgs, m[1])
		}
	}
	if len(msgs) < 20 {
		t.Fatalf("found only %d messages in the troubleshooting table", len(msgs))
	}
	return msgs
}

// placeholder splits a README message where it shows an example value or
// elides text: "...", quoted names, single capitals (X, N, P), platforms,
// paths and numbers.
var placeholder = regexp.MustCompile(`\.\.\.|…|"[^"]*"|\b[A-Z][A-Z0-9_]*\b|\blinux/[a-z0-9/]+|\b[a-z0-9]+64[a-z0-9]*\b|/[\w./-]+|\b\d+(\.\d+)*\b|\bIMAGE\b|\bREF\b|\bFILE\b|\bLINE\b|\bNAME\b|\bPATH\b|\bIMG\b|\bMIRROR\b|\bDIGEST\b`)

// fragments returns the literal parts of a README message worth matching.
func fragments(msg string) []string {
	var out []string
	for _, f := range placeholder.Split(msg, -1) {
		f = strings.TrimSpace(strings.Trim(strings.TrimSpace(f), "(),:;"))
		if len(f) >= 8 {
			out = append(out, f)
		}
	}
	return out
}

func TestTroubleshootingMessagesExist(t *testing.T) {
	var corpus strings.Builder
	for _, f := range errorFormats(t, true) {
		corpus.WriteString(verb.ReplaceAllString(f, "\x00"))
		corpus.WriteString("\n")
	}
	// Messages printed by the C init (pkg/sandbox/reaper.c) and by
	// libcontainer itself count too.
	if b, err := os.ReadFile(filepath.Join("..", "..", "pkg", "sandbox", "reaper.c")); err == nil {
		corpus.Write(b)
	}
	code := corpus.String() + "\nmapping tool not present\noperation not permitted\n"
	for _, msg := range troubleshooting(t) {
		frs := fragments(msg)
		if len(frs) == 0 {
			continue // a pure placeholder, e.g. `FILE:LINE: ...`
		}
		for _, f := range frs {
			if !strings.Contains(code, f) {
				t.Errorf("README troubleshooting message %q: %q is not in any error the code builds", msg, f)
			}
		}
	}
}

// fixWords start the "what to do" part of an actionable error.
var fixWords = regexp.MustCompile(`: (install|use|run|check|give|pass|add|pick|wait|drop|rebuild|retry|re-push|ask|create|log in|name one|set|remove|fix|unset|upgrade)\b`)

func TestActionableErrorsAreDocumented(t *testing.T) {
	readme := strings.Join(troubleshooting(t), "\n")
	seen := map[string]bool{}
	for _, f := range errorFormats(t) {
		if strings.HasPrefix(f, "[internal error]") || !fixWords.MatchString(f) || seen[f] {
			continue
		}
		seen[f] = true
		// The message's first literal words identify it in the table.
		head := verb.Split(f, -1)
		key := ""
		for _, h := range head {
			h, _, _ = strings.Cut(h, "`")
			h, _, _ = strings.Cut(h, "(")
			h = strings.Trim(strings.TrimSpace(h), `"),:;`)
			if w := strings.Fields(h); len(w) > 6 {
				h = strings.Join(w[:6], " ")
			}
			if len(h) >= 8 {
				key = h
				break
			}
		}
		if key == "" {
			continue
		}
		if !strings.Contains(readme, key) {
			t.Errorf("error %q (key %q) has no row in README's troubleshooting table", f, key)
		}
	}
}

// The README's security model names, for each rule, the test that performs
// the attack. Every test it names must exist, and every attack test of the
// integration suite (TestSecurity*, TestCache*) must be named there.
func TestSecurityModelNamesItsTests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Security model\n")
	if !ok {
		t.Fatal("README.md has no section \"## Security model\"")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	named := map[string]bool{}
	for _, m := range regexp.MustCompile(`\bTest[A-Z]\w*`).FindAllString(section, -1) {
		named[m] = true
	}
	defined := map[string]string{} // test name -> file
	testFunc := regexp.MustCompile(`(?m)^func (Test[A-Z]\w*)\(t \*testing\.T\)`)
	root := filepath.Join("..", "..")
	for _, dir := range []string{"cmd", "pkg", "integration"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
				defined[m[1]] = path
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(named) < 10 {
		t.Errorf("the security model names only %d tests", len(named))
	}
	for name := range named {
		if defined[name] == "" {
			t.Errorf("README's security model names %s, which no test file defines", name)
		}
	}
	for name, path := range defined {
		attack := strings.HasPrefix(name, "TestSecurity") || strings.HasPrefix(name, "TestCache")
		if attack && strings.Contains(path, "integration") && !named[name] {
			t.Errorf("attack test %s (%s) is not named in README's security model", name, path)
		}
	}
}
