// Command generate records golden.json: what Go's own text/template renders
// (or which error it reports) for each case below, so the Python renderer in
// src/flytenotify/engine/gotemplate.py can be held to it without Go in CI.
//
// Run it from the repository root with Go installed (Debian: apt-get install
// golang-go):
//
//	go run tests/data/gotemplate/generate.go
//
// Data is read as the Python side reads it: JSON objects become
// map[string]any, integers int, other numbers float64, and the template runs
// with Option("missingkey=error"), so an unknown field is an error.
//
// A case with Refused set is one where Go renders but flytenotify refuses on
// purpose; the reason says why, and the test checks that Go really did render.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/template"
)

const output = "tests/data/gotemplate/golden.json"

// defaultData is what a case without Data of its own renders against: the
// fields a Flyte 2 notification offers, and values of every kind.
const defaultData = `{
  "Run": {
    "Project": "flytesnacks",
    "Domain": "development",
    "Name": "abc123",
    "URL": "https://flyte.example.com/v2/runs/project/flytesnacks/domain/development/abc123"
  },
  "Phase": "failed",
  "Error": "OOMKilled: container \"main\" <exceeded> memory & was 'killed'\nsee logs",
  "Action": {"Name": "a0"},
  "Prompt": "",
  "Description": "",
  "PromptType": "",
  "Empty": "",
  "Count": 3,
  "Zero": 0,
  "Negative": -42,
  "Ratio": 0.25,
  "Big": 123456789.0,
  "Tiny": 0.00001234,
  "Whole": 2.0,
  "Yes": true,
  "No": false,
  "Nil": null,
  "Tags": ["alpha", "beta", "gamma"],
  "NoTags": [],
  "Nums": [10, 20, 30],
  "Unicode": "héllo wörld ✓ 日本",
  "Template": "{{.Run.Name}}",
  "Nested": {"Inner": {"Value": "deep"}}
}`

type testCase struct {
	Name    string
	Tmpl    string
	Data    string // JSON; empty means defaultData
	Refused string // why flytenotify refuses what Go renders
}

const (
	refusedPrintMap   = "printing a mapping: Go writes map[...]; name a field"
	refusedPrintList  = "printing a list: Go writes [...]; use index or range"
	refusedRangeMap   = "range over a mapping: ranges are over lists only"
	refusedIndexMiss  = "index of a missing key: Go writes <no value>"
	refusedPrintfMark = "a printf Go answers with %! markers"
	refusedDefine     = "define/block: a notification is a single template"
	refusedSlice      = "slice cuts UTF-8 text mid-character"
	refusedComplex    = "complex numbers"
	refusedNesting    = "nesting deeper than the bound (32)"
	refusedSharp      = "the printf flag #"
)

var cases = []testCase{
	// Text and fields.
	{Name: "empty template", Tmpl: ""},
	{Name: "plain text", Tmpl: "no actions at all"},
	{Name: "run name", Tmpl: "{{.Run.Name}}"},
	{Name: "project/domain", Tmpl: "{{.Run.Project}}/{{.Run.Domain}}"},
	{Name: "sdk email subject", Tmpl: "Run {{.Run.Name}} {{.Phase}}"},
	{Name: "sdk email body", Tmpl: "Run: {{.Run.Name}}\nProject/Domain: {{.Run.Project}}/{{.Run.Domain}}\nPhase: {{.Phase}}\nError: {{.Error}}\n"},
	{Name: "sdk slack message", Tmpl: "Run: {{.Run.Name}} finished with phase {{.Phase}}\n | {{.Run.Project}}/{{.Run.Domain}}\n"},
	{Name: "sdk slack example", Tmpl: "🚨 Run {{.Run.Name}} failed: {{.Error}}"},
	{Name: "action name", Tmpl: "{{.Action.Name}}"},
	{Name: "url", Tmpl: "<{{.Run.URL}}|open>"},
	{Name: "nested three deep", Tmpl: "{{.Nested.Inner.Value}}"},
	{Name: "root variable chain", Tmpl: "{{$.Run.Name}}"},
	{Name: "spaces inside action", Tmpl: "{{   .Run.Name   }}"},
	{Name: "newlines inside action", Tmpl: "{{\n.Run.Name\n}}"},
	{Name: "empty string field", Tmpl: "[{{.Prompt}}]"},
	{Name: "value holding braces", Tmpl: "{{.Template}}"},
	{Name: "int field", Tmpl: "{{.Count}} {{.Zero}} {{.Negative}}"},
	{Name: "float fields", Tmpl: "{{.Ratio}} {{.Big}} {{.Tiny}} {{.Whole}}"},
	{Name: "bool fields", Tmpl: "{{.Yes}} {{.No}}"},
	{Name: "nil field", Tmpl: "{{.Nil}}"},
	{Name: "unicode field", Tmpl: "{{.Unicode}}"},
	{Name: "lone closing braces", Tmpl: "a }} b {{.Phase}} }}"},
	{Name: "single braces", Tmpl: "{ {{.Phase}} }"},
	{Name: "three opening braces", Tmpl: "{{{.Phase}}}"},
	{Name: "trailing brace", Tmpl: "{{.Phase}}}"},
	{Name: "braces as a string", Tmpl: `{{"{{"}}.Phase{{"}}"}}`},
	{Name: "unknown field", Tmpl: "{{.Foo}}"},
	{Name: "unknown nested field", Tmpl: "{{.Run.Nope}}"},
	{Name: "field names are case-sensitive", Tmpl: "{{.run.name}}"},
	{Name: "field of a string", Tmpl: "{{.Run.Name.X}}"},
	{Name: "field of nil", Tmpl: "{{.Nil.X}}"},
	{Name: "field of a list", Tmpl: "{{.Tags.X}}"},
	{Name: "field with arguments", Tmpl: `{{.Phase "x"}}`},
	{Name: "print a mapping", Tmpl: "{{.Run}}", Refused: refusedPrintMap},
	{Name: "print the dot", Tmpl: "{{.}}", Refused: refusedPrintMap},
	{Name: "print the root variable", Tmpl: "{{$}}", Refused: refusedPrintMap},
	{Name: "print a list", Tmpl: "{{.Tags}}", Refused: refusedPrintList},
	{Name: "unknown field not reached", Tmpl: "{{if false}}{{.Foo}}{{end}}ok"},

	// Trim markers and comments.
	{Name: "left trim", Tmpl: "a  \n\t {{- .Phase}}"},
	{Name: "right trim", Tmpl: "{{.Phase -}} \n\t b"},
	{Name: "both trims", Tmpl: "x \n {{- .Phase -}} \n y"},
	{Name: "trim keeps the value's spaces", Tmpl: "[{{- .Error -}}]"},
	{Name: "trim with crlf", Tmpl: "a\r\n{{- .Phase -}}\r\nb"},
	{Name: "trim a run of actions", Tmpl: "{{.Phase}}  {{- \" \" -}}  {{.Count}}"},
	{Name: "negative number is not a trim", Tmpl: "a {{-3}} b"},
	{Name: "trim then negative number", Tmpl: "a {{- -3}} b"},
	{Name: "trim needs a space after the dash", Tmpl: "a {{-.Phase}}"},
	{Name: "dash alone", Tmpl: "{{-}}"},
	{Name: "trim markers with nothing between", Tmpl: "a {{- -}} b"},
	{Name: "right trim needs a space before the dash", Tmpl: "{{.Phase-}}"},
	{Name: "right trim tab", Tmpl: "{{.Phase\t-}}  b"},
	{Name: "comment", Tmpl: "a{{/* a comment */}}b"},
	{Name: "multi-line comment", Tmpl: "a{{/* one\ntwo\n*/}}b"},
	{Name: "trimmed comment", Tmpl: "a \n {{- /* c */ -}} \n b"},
	{Name: "comment with braces inside", Tmpl: "{{/* {{.Foo}} */}}ok"},
	{Name: "comment must end at the delimiter", Tmpl: "{{/* c */ }}"},
	{Name: "comment needs to start right after the delimiter", Tmpl: "{{ /* c */ }}"},
	{Name: "unclosed comment", Tmpl: "{{/* c }}"},
	{Name: "comment then text", Tmpl: "{{- /* c */}}   x"},

	// if / else.
	{Name: "if error", Tmpl: "{{if .Error}}E: {{.Error}}{{else}}ok{{end}}"},
	{Name: "if empty string", Tmpl: "{{if .Empty}}yes{{else}}no{{end}}"},
	{Name: "if nil", Tmpl: "{{if .Nil}}yes{{else}}no{{end}}"},
	{Name: "if zero", Tmpl: "{{if .Zero}}yes{{else}}no{{end}}"},
	{Name: "if count", Tmpl: "{{if .Count}}yes{{else}}no{{end}}"},
	{Name: "if false field", Tmpl: "{{if .No}}yes{{else}}no{{end}}"},
	{Name: "if empty list", Tmpl: "{{if .NoTags}}yes{{else}}no{{end}}"},
	{Name: "if list", Tmpl: "{{if .Tags}}yes{{else}}no{{end}}"},
	{Name: "if mapping", Tmpl: "{{if .Run}}yes{{else}}no{{end}}"},
	{Name: "if zero float", Tmpl: "{{if 0.0}}yes{{else}}no{{end}}"},
	{Name: "if empty literal", Tmpl: `{{if ""}}yes{{else}}no{{end}}`},
	{Name: "if without else", Tmpl: "[{{if .Empty}}x{{end}}]"},
	{Name: "else if chain", Tmpl: `{{if eq .Phase "succeeded"}}ok{{else if eq .Phase "failed"}}FAILED{{else if eq .Phase "aborted"}}aborted{{else}}other{{end}}`},
	{Name: "else if chain to else", Tmpl: `{{if eq .Phase "x"}}1{{else if eq .Phase "y"}}2{{else}}3{{end}}`},
	{Name: "else if not evaluated", Tmpl: "{{if .Phase}}a{{else if .Foo}}b{{end}}"},
	{Name: "if eq several", Tmpl: `{{if eq .Phase "timed_out" "failed"}}bad{{end}}`},
	{Name: "if not", Tmpl: "{{if not .Error}}clean{{else}}dirty{{end}}"},
	{Name: "if and", Tmpl: "{{if and .Error .Run.Name}}both{{end}}"},
	{Name: "if or", Tmpl: "{{if or .Empty .Nil}}any{{else}}none{{end}}"},
	{Name: "nested if", Tmpl: "{{if .Error}}{{if .Count}}{{.Count}}{{end}}{{end}}"},
	{Name: "if with trims", Tmpl: "{{- if .Error }}\n  Error: {{ .Error }}\n{{- else }}\n  Fine\n{{- end }}\n"},
	{Name: "if missing value", Tmpl: "{{if}}x{{end}}"},
	{Name: "if never closed", Tmpl: "{{if .Error}}x"},
	{Name: "stray else", Tmpl: "a{{else}}b"},
	{Name: "stray end", Tmpl: "a{{end}}"},
	{Name: "two elses", Tmpl: "{{if .Phase}}a{{else}}b{{else}}c{{end}}"},
	{Name: "else after else if", Tmpl: "{{if .Phase}}a{{else if .Count}}b{{else}}c{{end}}"},
	{Name: "extra end", Tmpl: "{{if .Phase}}x{{end}}{{end}}"},
	{Name: "end with argument", Tmpl: "{{if .Phase}}x{{end .Phase}}"},
	{Name: "else if missing value", Tmpl: "{{if .Phase}}{{else if}}{{end}}"},
	{Name: "if nil literal", Tmpl: "{{if nil}}x{{end}}"},
	{Name: "if unknown field", Tmpl: "{{if .Foo}}x{{end}}"},
	{Name: "else with argument", Tmpl: "{{if .Phase}}x{{else .Phase}}y{{end}}"},

	// with.
	{Name: "with rebinds dot", Tmpl: "{{with .Run}}{{.Name}} in {{.Project}} ({{$.Phase}}){{end}}"},
	{Name: "with else", Tmpl: "{{with .Empty}}x{{else}}none{{end}}"},
	{Name: "with nil", Tmpl: "{{with .Nil}}x{{else}}nil{{end}}"},
	{Name: "with variable", Tmpl: "{{with $n := .Run.Name}}{{$n}}={{.}}{{end}}"},
	{Name: "with else keeps dot", Tmpl: "{{with .Empty}}x{{else}}{{.Phase}}{{end}}"},
	{Name: "else if inside with", Tmpl: "{{with .Empty}}x{{else if .Phase}}y{{end}}"},

	// range.
	{Name: "range list", Tmpl: "{{range .Tags}}[{{.}}]{{end}}"},
	{Name: "range index and value", Tmpl: "{{range $i, $t := .Tags}}{{$i}}:{{$t}} {{end}}"},
	{Name: "range one variable", Tmpl: "{{range $t := .Tags}}{{$t}}{{end}}"},
	{Name: "range join", Tmpl: "{{range $i, $v := .Tags}}{{if gt $i 0}}, {{end}}{{$v}}{{end}}"},
	{Name: "range empty list else", Tmpl: "{{range .NoTags}}x{{else}}empty{{end}}"},
	{Name: "range nil else", Tmpl: "{{range .Nil}}x{{else}}nil{{end}}"},
	{Name: "range nil without else", Tmpl: "[{{range .Nil}}x{{end}}]"},
	{Name: "range break", Tmpl: `{{range .Tags}}{{if eq . "beta"}}{{break}}{{end}}{{.}}{{end}}`},
	{Name: "range continue", Tmpl: `{{range .Tags}}{{if eq . "beta"}}{{continue}}{{end}}{{.}}{{end}}`},
	{Name: "range numbers", Tmpl: "{{range .Nums}}{{.}},{{end}}"},
	{Name: "range nested with root", Tmpl: "{{range .Tags}}{{range $.Nums}}{{.}}{{end}};{{end}}"},
	{Name: "range counter by assignment", Tmpl: "{{$last := \"\"}}{{range .Tags}}{{$last = .}}{{end}}{{$last}}"},
	{Name: "range body variable is scoped", Tmpl: "{{range .Tags}}{{$x := .}}{{end}}{{$x}}"},
	{Name: "range over string", Tmpl: "{{range .Phase}}x{{end}}"},
	{Name: "range over int", Tmpl: "{{range .Count}}x{{end}}"},
	{Name: "range over mapping", Tmpl: "{{range .Run}}{{.}};{{end}}", Refused: refusedRangeMap},
	{Name: "range over unknown field", Tmpl: "{{range .Foo}}x{{end}}"},
	{Name: "break outside range", Tmpl: "{{break}}"},
	{Name: "continue outside range", Tmpl: "{{if .Phase}}{{continue}}{{end}}"},
	{Name: "break in range else", Tmpl: "{{range .NoTags}}x{{else}}{{break}}{{end}}"},
	{Name: "else if inside range", Tmpl: "{{range .Tags}}x{{else if .Phase}}y{{end}}"},
	{Name: "range never closed", Tmpl: "{{range .Tags}}x"},
	{Name: "range three variables", Tmpl: "{{range $a, $b, $c := .Tags}}x{{end}}"},
	{Name: "range with element fields", Tmpl: "{{range .Items}}{{.Name}}={{.Value}};{{end}}", Data: `{"Items": [{"Name": "a", "Value": 1}, {"Name": "b", "Value": 2.5}]}`},

	// Variables.
	{Name: "declare and use", Tmpl: "{{$x := .Run.Name}}{{$x}}"},
	{Name: "declaration prints nothing", Tmpl: "[{{$x := .Run.Name}}]"},
	{Name: "assign", Tmpl: "{{$x := 1}}{{$x = 2}}{{$x}}"},
	{Name: "assign inside if", Tmpl: "{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}"},
	{Name: "declare inside if is scoped", Tmpl: "{{if true}}{{$x := 1}}{{end}}{{$x}}"},
	{Name: "shadowing inside if", Tmpl: "{{$x := 1}}{{if true}}{{$x := 2}}{{$x}}{{end}}{{$x}}"},
	{Name: "undefined variable", Tmpl: "{{$x}}"},
	{Name: "assign undeclared", Tmpl: "{{$x = 1}}"},
	{Name: "assign undeclared not reached", Tmpl: "{{if false}}{{$x = 1}}{{end}}ok"},
	{Name: "variable fields", Tmpl: "{{$r := .Run}}{{$r.Name}}"},
	{Name: "root variable field", Tmpl: "{{$.Phase}}"},
	{Name: "if variable visible in else", Tmpl: "{{if $x := .Empty}}a{{else}}[{{$x}}]b{{end}}"},
	{Name: "declare a pipeline", Tmpl: "{{$n := .Tags | len}}{{$n}}"},
	{Name: "declare nothing", Tmpl: "{{$x := }}"},
	{Name: "variable with arguments", Tmpl: "{{$x := 1}}{{$x 2}}"},
	{Name: "declare with equals in the middle", Tmpl: "{{.Phase := 1}}"},

	// Literals.
	{Name: "integers", Tmpl: "{{1}} {{-1}} {{+1}} {{0}} {{-0}}"},
	{Name: "floats", Tmpl: "{{1.5}} {{1e3}} {{1E3}} {{.5}} {{1.}} {{-0.0}} {{2.0}}"},
	{Name: "float formatting", Tmpl: "{{123456.0}} {{1234567.0}} {{0.0001}} {{0.00001}} {{1e21}} {{1e20}} {{1e-7}} {{100000.0}}"},
	{Name: "float shortest digits", Tmpl: "{{0.1}} {{0.3}} {{2.675}} {{1e100}} {{5e-324}} {{1.7976931348623157e308}}"},
	{Name: "hex octal binary", Tmpl: "{{0x1F}} {{0X1f}} {{0o17}} {{017}} {{0b101}} {{0xE}}"},
	{Name: "underscores", Tmpl: "{{1_000}} {{0x_ff}} {{1_0.5}}"},
	{Name: "hex float", Tmpl: "{{0x1p4}} {{0x1.8p1}}"},
	{Name: "largest int", Tmpl: "{{9223372036854775807}} {{-9223372036854775808}}"},
	{Name: "int overflow", Tmpl: "{{9223372036854775808}}"},
	{Name: "integer overflow", Tmpl: "{{99999999999999999999}}"},
	{Name: "bad octal", Tmpl: "{{089}}"},
	{Name: "double underscore", Tmpl: "{{1__0}}"},
	{Name: "hex without digits", Tmpl: "{{0x}}"},
	{Name: "two dots", Tmpl: "{{1.5.5}}"},
	{Name: "number then letter", Tmpl: "{{3x}}"},
	{Name: "complex", Tmpl: "{{1i}}", Refused: refusedComplex},
	{Name: "complex pair", Tmpl: "{{1+2i}}", Refused: refusedComplex},
	{Name: "character constants", Tmpl: `{{'a'}} {{'\n'}} {{'\x41'}} {{'é'}} {{'\u00e9'}} {{'\''}} {{'\101'}}`},
	{Name: "empty character constant", Tmpl: "{{''}}"},
	{Name: "long character constant", Tmpl: "{{'ab'}}"},
	{Name: "unterminated character constant", Tmpl: "{{'a}}"},
	{Name: "string escapes", Tmpl: `{{"a\tb\\c\"d"}}`},
	{Name: "string code escapes", Tmpl: `{{"\u00e9\x41\101\U0001F600"}}`},
	{Name: "string utf-8 bytes", Tmpl: `{{"\xc3\xa9"}}`},
	{Name: "string bad escape", Tmpl: `{{"\q"}}`},
	{Name: "string escaped single quote", Tmpl: `{{"\'"}}`},
	{Name: "string bad utf-8", Tmpl: `{{"\xff"}}`, Refused: "a string literal that is not UTF-8"},
	{Name: "raw string", Tmpl: "{{`a\\n{{.Phase}}`}}"},
	{Name: "raw string newline and cr", Tmpl: "{{`a\r\nb`}}"},
	{Name: "unterminated string", Tmpl: `{{"abc}}`},
	{Name: "unterminated raw string", Tmpl: "{{`abc}}"},
	{Name: "string with newline", Tmpl: "{{\"a\nb\"}}"},
	{Name: "bools", Tmpl: "{{true}} {{false}}"},
	{Name: "nil command", Tmpl: "{{nil}}"},
	{Name: "two literals", Tmpl: `{{"a" "b"}}`},
	{Name: "field of a literal", Tmpl: `{{"x".Foo}}`},
	{Name: "field of nil literal", Tmpl: `{{nil.Foo}}`},
	{Name: "true is not a field", Tmpl: "{{.true}}"},

	// Functions: and, or, not.
	{Name: "and returns last", Tmpl: "{{and .Count .Phase}}"},
	{Name: "and returns first false", Tmpl: "[{{and .Empty .Phase}}]"},
	{Name: "or returns first true", Tmpl: `{{or .Empty "default"}}`},
	{Name: "or returns last", Tmpl: "{{or .Empty .Nil}}"},
	{Name: "or short-circuits", Tmpl: "{{or .Phase .Foo}}"},
	{Name: "and short-circuits", Tmpl: "[{{and .Empty .Foo}}]"},
	{Name: "or reaches the error", Tmpl: "{{or .Empty .Foo}}"},
	{Name: "or piped", Tmpl: "{{.Phase | or .Empty}}"},
	{Name: "and piped", Tmpl: "{{.Phase | and .Count}}"},
	{Name: "and no arguments", Tmpl: "{{and}}"},
	{Name: "and numbers", Tmpl: "{{and 1 0}} {{or 0 2}} {{and true 1.5}}"},
	{Name: "not", Tmpl: "{{not .Error}} {{not .Empty}} {{not .Nil}} {{not 0}}"},
	{Name: "not two arguments", Tmpl: "{{not 1 2}}"},
	{Name: "not no argument", Tmpl: "{{not}}"},

	// Comparisons.
	{Name: "eq strings", Tmpl: `{{eq .Phase "failed"}} {{eq .Phase "succeeded"}}`},
	{Name: "eq ints", Tmpl: "{{eq .Count 3}} {{eq .Count 4}}"},
	{Name: "eq int float", Tmpl: "{{eq .Count 3.0}}"},
	{Name: "eq string int", Tmpl: "{{eq .Phase 1}}"},
	{Name: "eq nil nil", Tmpl: "{{eq .Nil nil}}"},
	{Name: "eq nil string", Tmpl: `{{eq .Nil "x"}} {{eq "x" .Nil}}`},
	{Name: "eq one argument", Tmpl: "{{eq .Phase}}"},
	{Name: "eq bools", Tmpl: "{{eq .Yes true}} {{eq .No true}}"},
	{Name: "eq mappings", Tmpl: "{{eq .Run .Run}}"},
	{Name: "eq mapping nil", Tmpl: "{{eq .Run nil}}"},
	{Name: "eq list mapping", Tmpl: "{{eq .Tags .Run}}"},
	{Name: "eq mapping string", Tmpl: `{{eq .Run "x"}}`},
	{Name: "eq floats", Tmpl: "{{eq .Ratio 0.25}}"},
	{Name: "eq char int", Tmpl: "{{eq 'a' 97}}"},
	{Name: "eq several with type error later", Tmpl: `{{eq .Phase "failed" 1}}`},
	{Name: "eq several with type error first", Tmpl: `{{eq .Phase 1 "failed"}}`},
	{Name: "ne", Tmpl: `{{ne .Phase "succeeded"}} {{ne .Count 3}}`},
	{Name: "ne three arguments", Tmpl: "{{ne 1 2 3}}"},
	{Name: "lt", Tmpl: `{{lt 1 2}} {{lt "a" "b"}} {{lt 1.5 2.5}} {{lt 2 1}}`},
	{Name: "lt int float", Tmpl: "{{lt 1 2.5}}"},
	{Name: "lt bools", Tmpl: "{{lt true false}}"},
	{Name: "lt nil", Tmpl: "{{lt .Nil 1}}"},
	{Name: "lt strings by bytes", Tmpl: `{{lt "é" "z"}} {{lt "Z" "a"}}`},
	{Name: "le ge gt", Tmpl: "{{le 2 2}} {{le 3 2}} {{gt .Count 2}} {{ge .Count 4}} {{gt \"b\" \"a\"}} {{ge 2.5 2.5}}"},
	{Name: "gt mixed", Tmpl: `{{gt .Count "2"}}`},

	// len, index.
	{Name: "len", Tmpl: "{{len .Error}} {{len .Unicode}} {{len .Tags}} {{len .Run}} {{len \"\"}} {{len .NoTags}}"},
	{Name: "len piped", Tmpl: "{{.Tags | len}}"},
	{Name: "len of int", Tmpl: "{{len .Count}}"},
	{Name: "len of nil", Tmpl: "{{len .Nil}}"},
	{Name: "len two arguments", Tmpl: "{{len .Tags .Tags}}"},
	{Name: "len no argument", Tmpl: "{{len}}"},
	{Name: "index list", Tmpl: "{{index .Tags 0}} {{index .Tags 2}} {{index .Nums 1}}"},
	{Name: "index out of range", Tmpl: "{{index .Tags 3}}"},
	{Name: "index negative", Tmpl: "{{index .Tags -1}}"},
	{Name: "index mapping", Tmpl: `{{index .Run "Name"}}`},
	{Name: "index mapping twice", Tmpl: `{{index .Nested "Inner" "Value"}}`},
	{Name: "index missing key", Tmpl: `{{index .Run "Nope"}}`, Refused: refusedIndexMiss},
	{Name: "index string", Tmpl: "{{index .Phase 0}} {{index .Unicode 1}}"},
	{Name: "index list by string", Tmpl: `{{index .Tags "a"}}`},
	{Name: "index mapping by int", Tmpl: "{{index .Run 1}}"},
	{Name: "index nil", Tmpl: "{{index .Nil 0}}"},
	{Name: "index int", Tmpl: "{{index .Count 0}}"},
	{Name: "index list by float", Tmpl: "{{index .Tags 1.0}}"},
	{Name: "index list by nil", Tmpl: "{{index .Tags nil}}"},
	{Name: "index nothing", Tmpl: "{{index .Phase}}"},
	{Name: "index nothing of a list", Tmpl: "{{index .Tags}}", Refused: refusedPrintList},
	{Name: "index then field", Tmpl: `{{(index .Nested "Inner").Value}}`},
	{Name: "index in range", Tmpl: "{{range $i, $n := .Nums}}{{index $.Tags $i}}={{$n}} {{end}}"},

	// print, println.
	{Name: "print spaces between non-strings", Tmpl: "{{print 1 2}}|{{print \"a\" 1 2 \"b\"}}|{{print .Phase .Count}}|{{print 1.5 true}}"},
	{Name: "print nothing", Tmpl: "[{{print}}]"},
	{Name: "print nil", Tmpl: "{{print .Nil}} {{print .Nil .Nil}} {{print nil}} {{print \"a\" nil}}"},
	{Name: "print list", Tmpl: "{{print .Tags}}", Refused: refusedPrintList},
	{Name: "print floats", Tmpl: "{{print .Big .Tiny .Whole}}"},
	{Name: "println", Tmpl: "{{println \"a\" 1}}|{{println}}|{{println .Phase .Nil}}"},
	{Name: "print function as argument", Tmpl: "{{print len}}"},

	// html, js, urlquery.
	{Name: "html error", Tmpl: "{{html .Error}}"},
	{Name: "html all specials", Tmpl: `{{html "<a href='x'>&\"</a>\x00"}}`},
	{Name: "html several", Tmpl: "{{html 1 2}}|{{html \"a\" \"b\"}}|{{html .Nil}}|{{html}}|{{html .Nil 1}}"},
	{Name: "html piped", Tmpl: "{{.Error | html}}"},
	{Name: "js error", Tmpl: "{{js .Error}}"},
	{Name: "js specials", Tmpl: `{{js "a=b&c<d>'\"\\ \t\x7f\u2028 ✓"}}`},
	{Name: "js unicode", Tmpl: "{{js .Unicode}}"},
	{Name: "urlquery", Tmpl: "{{urlquery .Error}}"},
	{Name: "urlquery specials", Tmpl: `{{urlquery "a b&c=d/é~_.-+%"}}`},
	{Name: "urlquery two strings", Tmpl: "{{urlquery .Run.Project .Run.Name}}"},
	{Name: "urlquery piped", Tmpl: "https://example.com/?run={{.Run.Name | urlquery}}&q={{.Error | urlquery}}"},
	{Name: "html of a mapping", Tmpl: "{{html .Run}}", Refused: refusedPrintMap},

	// Unsupported and unknown functions, templates.
	{Name: "unknown function", Tmpl: "{{foo .Phase}}"},
	{Name: "unknown function in a pipe", Tmpl: "{{.Phase | upper}}"},
	{Name: "slice", Tmpl: "{{slice .Phase 0 2}}", Refused: refusedSlice},
	{Name: "call", Tmpl: "{{call .Phase}}"},
	{Name: "template", Tmpl: `{{template "x"}}`},
	{Name: "template with data", Tmpl: `{{template "x" .}}`},
	{Name: "define", Tmpl: `{{define "x"}}y{{end}}`, Refused: refusedDefine},
	{Name: "define and template", Tmpl: `{{define "x"}}[{{.}}]{{end}}{{template "x" .Phase}}`, Refused: refusedDefine},
	{Name: "block", Tmpl: `{{block "x" .}}y{{end}}`, Refused: refusedDefine},
	{Name: "define inside if", Tmpl: `{{if .Phase}}{{define "x"}}y{{end}}{{end}}`},

	// Pipelines and parentheses.
	{Name: "pipe to printf", Tmpl: `{{.Phase | printf "%s!"}}`},
	{Name: "pipe is the last argument", Tmpl: `{{"x" | printf "%s-%s" "a"}}`},
	{Name: "pipe chain", Tmpl: `{{.Phase | printf "%s" | len}}`},
	{Name: "pipe not not", Tmpl: "{{.Phase | not | not}}"},
	{Name: "pipe into a field", Tmpl: "{{.Phase | .Run}}"},
	{Name: "pipe into a literal", Tmpl: `{{.Phase | "x"}}`},
	{Name: "pipe into dot", Tmpl: "{{.Phase | .}}"},
	{Name: "pipe into a variable", Tmpl: "{{$x := 1}}{{.Phase | $x}}"},
	{Name: "pipe into parentheses", Tmpl: `{{.Phase | (printf "%s")}}`},
	{Name: "trailing pipe", Tmpl: "{{.Phase |}}"},
	{Name: "leading pipe", Tmpl: "{{| .Phase}}"},
	{Name: "double pipe", Tmpl: "{{.Phase | | len}}"},
	{Name: "parenthesized", Tmpl: "{{(len .Tags)}} {{(.Phase)}}"},
	{Name: "chain on parentheses", Tmpl: "{{(.Run).Name}}"},
	{Name: "nested calls", Tmpl: `{{printf "%s/%s" (printf "%d" .Count) (index .Tags 1)}}`},
	{Name: "parentheses with arguments", Tmpl: `{{(.Phase) "x"}}`},
	{Name: "unclosed paren", Tmpl: "{{(.Phase}}"},
	{Name: "extra closing paren", Tmpl: "{{.Phase)}}"},
	{Name: "empty parentheses", Tmpl: "{{()}}"},
	{Name: "function chain field", Tmpl: "{{len.Foo}}"},

	// Syntax errors.
	{Name: "empty action", Tmpl: "{{}}"},
	{Name: "unclosed action", Tmpl: "abc {{ .Phase"},
	{Name: "unclosed action at end", Tmpl: "abc {{"},
	{Name: "half closed action", Tmpl: "{{.Phase}"},
	{Name: "unclosed action on a later line", Tmpl: "line one\n{{.Phase\nline three"},
	{Name: "unexpected character", Tmpl: "{{.Phase @}}"},
	{Name: "unicode identifier", Tmpl: "{{é}}"},
	{Name: "bad character after field", Tmpl: "{{.Phase€}}"},
	{Name: "unrecognized character", Tmpl: "{{ € }}"},
	{Name: "colon alone", Tmpl: "{{$x : 1}}"},
	{Name: "comma outside range", Tmpl: "{{$a, $b := .Tags}}"},
	{Name: "dot dot", Tmpl: "{{..Phase}}"},
	{Name: "dollar field", Tmpl: "{{.$}}"},
	{Name: "deep nesting", Tmpl: strings.Repeat("{{if true}}", 33) + "x" + strings.Repeat("{{end}}", 33), Refused: refusedNesting},
	{Name: "nesting at the bound", Tmpl: strings.Repeat("{{if true}}", 32) + "x" + strings.Repeat("{{end}}", 32)},
	{Name: "long else if chain", Tmpl: "{{if eq .Count 0}}0" + elseIfs(1, 40) + "{{else}}none{{end}}"},

	// printf.
	{Name: "printf basics", Tmpl: `{{printf "%s %v %d %q %%" .Phase .Run.Name .Count .Error}}`},
	{Name: "printf string widths", Tmpl: `{{printf "[%5s|%-5s|%05s|%.2s|%5.1s|%-6.3s]" "ab" "ab" "ab" .Unicode .Unicode .Unicode}}`},
	{Name: "printf string hex", Tmpl: `{{printf "%x %X %.1x %8x %-8x| %08x" "hi" "hi" "hi" "hi" "hi" "hi"}}`},
	{Name: "printf empty string hex", Tmpl: `{{printf "[%x|%4x|%04x]" "" "" ""}}`},
	{Name: "printf unicode hex", Tmpl: `{{printf "%x" "é"}}`},
	{Name: "printf spaced hex", Tmpl: `{{printf "[% x|% X|%- 12x|% .1x|%0 8x]" "hé" "hi" "ab" "ab" "ab"}}`},
	{Name: "printf ints", Tmpl: `{{printf "[%d|%5d|%-5d|%05d|%+d|% d|%+05d|%.3d|%8.3d|%.0d|%3.0d|%-05d]" -42 42 42 -42 42 42 42 -7 7 0 0 5}}`},
	{Name: "printf int bases", Tmpl: `{{printf "%x %X %o %b %x %08b %+x" 255 255 8 5 -255 5 10}}`},
	{Name: "printf v", Tmpl: `{{printf "%v|%v|%v|%v|%v|%6v|%-6v|" .Count .Ratio .Yes .Phase .Nil 1 .Nil}}`},
	{Name: "printf v flags", Tmpl: `{{printf "%+v % v %05v %.2v %6.2v %.3v" 5 5 5 3.14159 3.14159 "hello"}}`},
	{Name: "printf bool", Tmpl: `{{printf "%t %5t %-6t|" true false .Yes}}`},
	{Name: "printf floats", Tmpl: `{{printf "%e %E %f %F %g %G" 1234.5678 1234.5678 1234.5678 1234.5678 1234.5678 1234.5678}}`},
	{Name: "printf small floats", Tmpl: `{{printf "%e %f %g %G %v" 0.000012345 0.000012345 0.000012345 0.000012345 0.000012345}}`},
	{Name: "printf big floats", Tmpl: `{{printf "%e %f %g %v" 1e21 1e21 1e21 1e21}}`},
	{Name: "printf float flags", Tmpl: `{{printf "[%.2f|%8.3f|%-8.2f|%08.3f|%+.1e|%.3g|%.10g|% .2f|%+08.2f|%08.2f|%.0f|%.0e]" 3.14159 3.14159 3.14159 -3.14159 31415.9 31415.9 31415.9 2.5 2.5 -2.5 2.5 2.5}}`},
	{Name: "printf g precision", Tmpl: `{{printf "%.3g %.3g %.3g %.1g %.0g %.5g %g %g" 100.0 1e5 0.0001234 0.05 7.0 123.456 100000.0 1000000.0}}`},
	{Name: "printf g rounding", Tmpl: `{{printf "%.2g %.2f %.1f %.1f %.0f %.0f" 0.125 0.125 0.25 0.35 0.5 1.5}}`},
	{Name: "printf zero floats", Tmpl: `{{printf "%v %e %f %g %.2g %v" 0.0 0.0 0.0 0.0 0.0 -0.0}}`},
	{Name: "printf q", Tmpl: `{{printf "%q %q %q %+q %10q %-10q| %.3q" "a\tb\n" .Unicode "\u00a0\u200b\x7f\x01" .Unicode "ab" "ab" "abcdef"}}`},
	{Name: "printf q emoji", Tmpl: `{{printf "%q %+q" "😀" "😀"}}`},
	{Name: "printf percent with width", Tmpl: `{{printf "%5% %-5% %d%%" 3}}`},
	{Name: "printf format from data", Tmpl: `{{printf .Run.Name}}`},
	{Name: "printf format piped", Tmpl: `{{"100%% done" | printf}}`},
	{Name: "printf nothing to format", Tmpl: `{{printf "plain"}}`},
	{Name: "printf no arguments", Tmpl: "{{printf}}"},
	{Name: "printf format is a number", Tmpl: "{{printf 3}}"},
	{Name: "printf format is an int field", Tmpl: "{{printf .Count}}"},
	{Name: "printf format is nil", Tmpl: "{{printf nil}}"},
	{Name: "printf format is a nil field", Tmpl: "{{printf .Nil}}"},
	{Name: "printf d of string", Tmpl: `{{printf "%d" .Phase}}`, Refused: refusedPrintfMark},
	{Name: "printf s of int", Tmpl: `{{printf "%s" .Count}}`, Refused: refusedPrintfMark},
	{Name: "printf s of nil", Tmpl: `{{printf "%s" .Nil}}`, Refused: refusedPrintfMark},
	{Name: "printf f of int", Tmpl: `{{printf "%f" .Count}}`, Refused: refusedPrintfMark},
	{Name: "printf d of float", Tmpl: `{{printf "%d" .Ratio}}`, Refused: refusedPrintfMark},
	{Name: "printf missing argument", Tmpl: `{{printf "%s %s" .Phase}}`, Refused: refusedPrintfMark},
	{Name: "printf extra argument", Tmpl: `{{printf "%s" .Phase .Count}}`, Refused: refusedPrintfMark},
	{Name: "printf bad verb", Tmpl: `{{printf "%z" .Phase}}`, Refused: refusedPrintfMark},
	{Name: "printf no verb", Tmpl: `{{printf "100%" }}`, Refused: refusedPrintfMark},
	{Name: "printf star width", Tmpl: `{{printf "%*d" 5 3}}`, Refused: "printf * widths"},
	{Name: "printf argument index", Tmpl: `{{printf "%[2]s %[1]s" "a" "b"}}`, Refused: "printf argument indexes"},
	{Name: "printf sharp", Tmpl: `{{printf "%#x" 255}}`, Refused: refusedSharp},
	{Name: "printf c", Tmpl: `{{printf "%c" 65}}`, Refused: "printf %c"},
	{Name: "printf T", Tmpl: `{{printf "%T" .Phase}}`, Refused: "printf %T names Go types"},
	{Name: "printf q of int", Tmpl: `{{printf "%q" 65}}`, Refused: "printf %q of a number"},
	{Name: "printf mapping", Tmpl: `{{printf "%v" .Run}}`, Refused: refusedPrintMap},
	{Name: "printf huge width", Tmpl: `{{printf "%20000s" "x" | len}}`, Refused: "printf widths above 10000"},
	{Name: "printf dot at end", Tmpl: `{{printf "%5." 1}}`, Refused: refusedPrintfMark},

	// Notification-shaped templates.
	{Name: "email html body", Tmpl: `<h1>Run {{.Run.Name}} {{.Phase}}</h1>{{if .Error}}<pre>{{.Error}}</pre>{{end}}<a href="{{.Run.URL}}">open</a>`},
	{Name: "phase table", Tmpl: `{{- if eq .Phase "succeeded" -}} ✅ {{- else if eq .Phase "failed" -}} ❌ {{- else -}} ⚠️ {{- end }} {{ .Run.Name }}`},
	{Name: "truncated error", Tmpl: `{{printf "%.20s" .Error}}…`},
	{Name: "default error", Tmpl: `Error: {{or .Error "none"}} / prompt: {{or .Prompt "none"}}`},
	{Name: "with action", Tmpl: `{{with .Action}}action {{.Name}}{{end}} of {{.Run.Name}}`},
	{Name: "succeeded run", Tmpl: "{{.Phase}}{{if .Error}}: {{.Error}}{{end}}", Data: `{"Phase": "succeeded", "Error": ""}`},
	{Name: "paused prompt", Tmpl: "{{if eq .Phase \"paused\"}}{{.PromptType}}: {{.Prompt}}{{end}}", Data: `{"Phase": "paused", "Prompt": "Approve deploy?", "PromptType": "approval"}`},
	{Name: "timed out", Tmpl: "{{if eq .Phase \"timed_out\"}}timed out after {{.Description}}{{end}}", Data: `{"Phase": "timed_out", "Description": "1h"}`},
	{Name: "empty data", Tmpl: "text only {{/* nothing */}}", Data: `{}`},
	{Name: "empty data field", Tmpl: "{{.Run.Name}}", Data: `{}`},
}

func elseIfs(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "{{else if eq .Count %d}}%d", i, i)
	}
	return b.String()
}

type record struct {
	Name     string          `json:"name"`
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data,omitempty"`
	Output   *string         `json:"output,omitempty"`
	Error    *string         `json:"error,omitempty"`
	Refused  string          `json:"refused,omitempty"`
}

// decode reads JSON the way Python's json module does: integers as int,
// numbers with a fraction or exponent as float64.
func decode(text string) any {
	decoder := json.NewDecoder(strings.NewReader(text))
	decoder.UseNumber()
	var value any
	if err := decoder.Decode(&value); err != nil {
		panic(err)
	}
	return convert(value)
}

func convert(value any) any {
	switch v := value.(type) {
	case map[string]any:
		for key, item := range v {
			v[key] = convert(item)
		}
		return v
	case []any:
		for i, item := range v {
			v[i] = convert(item)
		}
		return v
	case json.Number:
		if !strings.ContainsAny(string(v), ".eE") {
			n, err := v.Int64()
			if err != nil {
				panic(err)
			}
			return int(n)
		}
		f, err := v.Float64()
		if err != nil {
			panic(err)
		}
		return f
	}
	return value
}

func run(c testCase) record {
	rec := record{Name: c.Name, Template: c.Tmpl, Refused: c.Refused}
	data := defaultData
	if c.Data != "" {
		data = c.Data
		rec.Data = json.RawMessage(c.Data)
	}
	tmpl, err := template.New("t").Option("missingkey=error").Parse(c.Tmpl)
	if err == nil {
		var out bytes.Buffer
		if err = tmpl.Execute(&out, decode(data)); err == nil {
			text := out.String()
			rec.Output = &text
		}
	}
	if err != nil {
		text := err.Error()
		rec.Error = &text
	}
	return rec
}

func main() {
	seen := map[string]bool{}
	records := make([]record, 0, len(cases))
	for _, c := range cases {
		if seen[c.Name] {
			panic("duplicate case name: " + c.Name)
		}
		seen[c.Name] = true
		rec := run(c)
		if rec.Refused != "" && rec.Error != nil {
			panic("case " + c.Name + " is marked refused but Go fails too: " + *rec.Error)
		}
		records = append(records, rec)
	}
	golden := map[string]any{
		"go_version":   runtime.Version(),
		"default_data": json.RawMessage(defaultData),
		"cases":        records,
	}
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(golden); err != nil {
		panic(err)
	}
	if err := os.WriteFile(output, out.Bytes(), 0o644); err != nil {
		panic(err)
	}
	fmt.Printf("wrote %d cases to %s with %s\n", len(records), output, runtime.Version())
}
