package accel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Entry is one entry of a Debian changelog: its version and its text (the
// lines between the header and the trailer).
type Entry struct {
	Version string `json:"version"`
	Text    string `json:"text"`
}

var changelogHeader = regexp.MustCompile(`^(\S+) \(([^)]+)\) [^;]*;`)

// ParseChangelog reads a Debian changelog (gzip-compressed or not).
func ParseChangelog(r io.Reader) ([]Entry, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(2); err == nil && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("read changelog: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReader(zr)
	}
	var out []Entry
	var text strings.Builder
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := changelogHeader.FindStringSubmatch(line); m != nil {
			if len(out) > 0 {
				out[len(out)-1].Text = text.String()
			}
			text.Reset()
			out = append(out, Entry{Version: m[2]})
			continue
		}
		if len(out) > 0 && !strings.HasPrefix(line, " -- ") {
			text.WriteString(line)
			text.WriteByte('\n')
		}
	}
	if len(out) > 0 {
		out[len(out)-1].Text = text.String()
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read changelog: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read changelog: no entries")
	}
	return out, nil
}

// Delta is the entries of image that cross lacks: the changes the image's
// package has and the cross package was not built with (e.g. a security
// update of the native gcc that the cross gcc did not get).
func Delta(image, cross []Entry) []Entry {
	have := map[string]bool{}
	for _, e := range cross {
		have[e.Version] = true
	}
	var out []Entry
	for _, e := range image {
		if !have[e.Version] {
			out = append(out, e)
		}
	}
	return out
}

// A rule says what one known changelog entry changes in the generated code
// and how the wrapper keeps the output identical: the compiles it affects
// run the image's own compiler, emulated.
type rule struct {
	// match is a string of the entry's text.
	match string
	// triplets are the targets it changes ("" = all).
	triplets []string
	// ssp: compiles with the stack protector or stack clash protection
	// in effect run emulated.
	ssp bool
	why string
}

// knownRules are the changelog entries whose effect was measured
// (bench/accel/NOTES.md): anything else in a delta refuses the accelerator.
var knownRules = []rule{{
	// gcc-12 12.2.0-14+deb12u1 (bookworm): the backport of the aarch64
	// frame layout series behind the fix. The cross gcc-12 12.2.0-14cross1
	// lays out stack-protected frames differently (10 of 12 objects differ
	// with -fstack-protector*) and probes stack-clash-protected frames
	// differently (integration/accel_test.go's o3.o, -O3
	// -fstack-clash-protection of a function with a VLA and alloca); the
	// rest of the series is refactoring: objects without either flag are
	// identical (bench/accel/NOTES.md, TestAccel).
	match:    "CVE-2023-4039",
	triplets: []string{"aarch64-linux-gnu"},
	ssp:      true,
	why:      "CVE-2023-4039: the stack protector's and stack clash protection's frame layout on aarch64",
}}

// Rules is what a delta means for the wrapper.
type Rules struct {
	// SSPEmulated: compiles with the stack protector in effect run the
	// image's cc1.
	SSPEmulated bool `json:"ssp_emulated,omitempty"`
	// Why lists the entries behind the rules, for --verbose and doctor.
	Why []string `json:"why,omitempty"`
}

// RulesFor turns the delta of a compiler package for target triplet into
// rules; an entry no rule knows is a Refusal naming it.
func RulesFor(pkg string, delta []Entry, triplet string) (Rules, error) {
	var r Rules
	for _, e := range delta {
		k := matchRule(e, triplet)
		if k == nil {
			return Rules{}, refuse("the image's %s %s has a change the cross compiler lacks and xrun has not checked (%s): running emulated",
				pkg, e.Version, firstLine(e.Text))
		}
		r.SSPEmulated = r.SSPEmulated || k.ssp
		r.Why = append(r.Why, fmt.Sprintf("%s %s: %s", pkg, e.Version, k.why))
	}
	return r, nil
}

func matchRule(e Entry, triplet string) *rule {
	for i, k := range knownRules {
		if !strings.Contains(e.Text, k.match) {
			continue
		}
		ok := len(k.triplets) == 0
		for _, t := range k.triplets {
			ok = ok || t == triplet
		}
		// An entry that mentions the CVE but changes more than that
		// single item is not the measured one.
		if ok && countItems(e.Text) == 1 {
			return &knownRules[i]
		}
	}
	return nil
}

// countItems counts the top-level "  * " items of an entry.
func countItems(text string) int {
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "  * ") {
			n++
		}
	}
	return n
}

func firstLine(text string) string {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "*"))
		if l != "" && !strings.HasPrefix(l, "[") {
			if len(l) > 100 {
				l = l[:100] + "..."
			}
			return l
		}
	}
	return "no text"
}

// sameChangelog reports whether two changelogs have the same entries.
func sameChangelog(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Version != b[i].Version || !bytes.Equal([]byte(a[i].Text), []byte(b[i].Text)) {
			return false
		}
	}
	return true
}
