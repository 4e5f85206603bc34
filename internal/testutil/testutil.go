// Package testutil holds the helpers that xrun's tests share.
package testutil

import (
	"os"
	"testing"
)

// MustWork reports whether XRUN_TEST_MUST_WORK=1 (set by CI) asks that
// every test whose prerequisite is missing fail instead of skipping.
func MustWork() bool { return os.Getenv("XRUN_TEST_MUST_WORK") == "1" }

// SkipOrFail skips t with the reason, or fails it under MustWork.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if MustWork() {
		t.Fatalf("XRUN_TEST_MUST_WORK=1 and a prerequisite is missing: "+format, args...)
	}
	t.Skipf(format, args...)
}
