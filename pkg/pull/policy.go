package pull

import (
	"fmt"
	"strings"
)

// Policy says when Resolve may use the network.
type Policy string

const (
	// PullMissing uses the cached resolution of ref@platform when it exists
	// and asks the registry only on a miss. It is the default.
	PullMissing Policy = "missing"
	// PullAlways re-resolves tags against the registry on every call.
	// Digest-pinned references that are cached still never use the network.
	PullAlways Policy = "always"
	// PullNever never uses the network; a cache miss is ErrNotCached.
	PullNever Policy = "never"
)

// ParsePolicy parses the value of --pull: "missing", "always" or "never"
// (case-insensitive). The empty string is PullMissing.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return PullMissing, nil
	case PullMissing, PullAlways, PullNever:
		return p, nil
	}
	return "", fmt.Errorf("invalid pull policy %q: use missing, always or never", s)
}

// String returns the policy as spelled on the command line.
func (p Policy) String() string { return string(p) }
