package pull

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParsePlatform(t *testing.T) {
	lin := func(arch, variant string) v1.Platform {
		return v1.Platform{OS: "linux", Architecture: arch, Variant: variant}
	}
	for _, tt := range []struct {
		in   string
		want v1.Platform
	}{
		{"linux/arm64", lin("arm64", "")},
		{"arm64", lin("arm64", "")},
		{"linux/arm64/v8", lin("arm64", "")},
		{"arm64/v8", lin("arm64", "")},
		{"aarch64", lin("arm64", "")},
		{"linux/aarch64", lin("arm64", "")},
		{"linux/arm/v7", lin("arm", "v7")},
		{"arm/v7", lin("arm", "v7")},
		{"arm", lin("arm", "v7")},
		{"linux/arm", lin("arm", "v7")},
		{"arm/v6", lin("arm", "v6")},
		{"arm/6", lin("arm", "v6")},
		{"armhf", lin("arm", "v7")},
		{"armel", lin("arm", "v6")},
		{"armv7l", lin("arm", "v7")},
		{"amd64", lin("amd64", "")},
		{"x86_64", lin("amd64", "")},
		{"linux/amd64/v1", lin("amd64", "")},
		{"linux/amd64/v3", lin("amd64", "v3")},
		{"riscv64", lin("riscv64", "")},
		{"ppc64le", lin("ppc64le", "")},
		{"s390x", lin("s390x", "")},
		{"386", lin("386", "")},
		{"i686", lin("386", "")},
		{"mips64le", lin("mips64le", "")},
		{"loong64", lin("loong64", "")},
		{"loongarch64", lin("loong64", "")},
		{" Linux/ARM64 ", lin("arm64", "")},
	} {
		got, err := ParsePlatform(tt.in)
		if err != nil {
			t.Errorf("ParsePlatform(%q) = error %v, want %v", tt.in, err, tt.want)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParsePlatform(%q) = %v, want %v (-want +got):\n%s", tt.in, got, tt.want, diff)
		}
	}
}

func TestParsePlatformErrors(t *testing.T) {
	for _, tt := range []struct {
		in, want string
	}{
		{"linux/foo", `unknown platform "linux/foo": use OS/ARCH[/VARIANT], e.g. linux/arm64, linux/arm/v7, linux/riscv64`},
		{"foo", `unknown platform "foo": use OS/ARCH`},
		{"", "empty platform"},
		{"linux/arm/v9", `unknown platform "linux/arm/v9": arm variants are v5, v6, v7, v8`},
		{"s390x/v2", `unknown platform "s390x/v2": s390x has no variants`},
		{"linux/arm64/v8/x", `unknown platform "linux/arm64/v8/x"`},
		{"windows/amd64", `unsupported platform "windows/amd64": xrun runs linux images only`},
		{"armhf/v6", `unknown platform "armhf/v6": armhf means arm/v7`},
	} {
		got, err := ParsePlatform(tt.in)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("ParsePlatform(%q) = %v, %v; want error starting with %q", tt.in, got, err, tt.want)
		}
	}
}

func TestPlatformRank(t *testing.T) {
	p := func(s string) v1.Platform {
		parts := strings.Split(s, "/")
		pl := v1.Platform{OS: parts[0], Architecture: parts[1]}
		if len(parts) > 2 {
			pl.Variant = parts[2]
		}
		return pl
	}
	for _, tt := range []struct {
		want, have string
		rank       int
	}{
		{"linux/arm/v7", "linux/arm/v7", 0},
		{"linux/arm/v7", "linux/arm/v6", 1},
		{"linux/arm/v7", "linux/arm/v5", 2},
		{"linux/arm/v7", "linux/arm", 0}, // arm without a variant means v7
		{"linux/arm/v6", "linux/arm/v7", -1},
		{"linux/arm64", "linux/arm64/v8", 0},
		{"linux/arm64", "linux/aarch64", 0},
		{"linux/arm64", "linux/arm/v7", -1},
		{"linux/amd64", "linux/amd64", 0},
		{"linux/amd64", "linux/amd64/v3", -1},
		{"linux/amd64/v3", "linux/amd64", 2},
		{"linux/riscv64", "linux/riscv64", 0},
		{"linux/riscv64", "windows/riscv64", -1},
	} {
		if got := platformRank(p(tt.want), p(tt.have)); got != tt.rank {
			t.Errorf("platformRank(%q, %q) = %d, want %d", tt.want, tt.have, got, tt.rank)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Policy
	}{
		{"", PullMissing},
		{"missing", PullMissing},
		{"always", PullAlways},
		{"Never", PullNever},
	} {
		if got, err := ParsePolicy(tt.in); err != nil || got != tt.want {
			t.Errorf("ParsePolicy(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
	if got, err := ParsePolicy("sometimes"); err == nil {
		t.Errorf("ParsePolicy(%q) = %v, want error", "sometimes", got)
	}
}
