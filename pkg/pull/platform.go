package pull

import (
	"fmt"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// arches is the table of architectures xrun knows, with the spellings users
// and `uname -m` use for them. variants lists the variants accepted after
// the architecture, normalized; defVariant is used when none is given.
var arches = []struct {
	name       string
	aliases    []string
	variants   []string
	defVariant string
}{
	{name: "amd64", aliases: []string{"x86_64", "x86-64", "x64"}, variants: []string{"v2", "v3", "v4"}},
	{name: "arm64", aliases: []string{"aarch64", "armv8", "armv8l"}},
	{name: "arm", variants: []string{"v5", "v6", "v7", "v8"}, defVariant: "v7"},
	{name: "386", aliases: []string{"i386", "i486", "i586", "i686", "x86"}},
	{name: "riscv64", variants: []string{"rva20u64", "rva22u64", "rva23u64"}},
	{name: "ppc64le", aliases: []string{"ppc64el", "powerpc64le"}},
	{name: "ppc64", aliases: []string{"powerpc64"}},
	{name: "s390x"},
	{name: "mips64le", aliases: []string{"mips64el"}},
	{name: "mips64"},
	{name: "mipsle", aliases: []string{"mipsel"}},
	{name: "mips"},
	{name: "loong64", aliases: []string{"loongarch64"}},
}

// archAliases maps spellings that imply a variant (Debian's armhf, uname's
// armv7l) to an architecture and variant.
var archAliases = map[string][2]string{
	"armhf":  {"arm", "v7"},
	"armv7":  {"arm", "v7"},
	"armv7l": {"arm", "v7"},
	"armel":  {"arm", "v6"},
	"armv6":  {"arm", "v6"},
	"armv6l": {"arm", "v6"},
	"armv5":  {"arm", "v5"},
	"armv5l": {"arm", "v5"},
}

// knownOSes are the operating systems that may appear in an index. xrun runs
// linux images only; the others are recognized so the error can say so.
var knownOSes = []string{"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos", "aix", "plan9"}

const platformHint = "use OS/ARCH[/VARIANT], e.g. linux/arm64, linux/arm/v7, linux/riscv64"

// canonArch returns the canonical name of arch (or an alias), the variant
// the alias implies, and whether arch is known.
func canonArch(arch string) (name, variant string, ok bool) {
	if a, ok := archAliases[arch]; ok {
		return a[0], a[1], true
	}
	for _, a := range arches {
		if a.name == arch || slices.Contains(a.aliases, arch) {
			return a.name, "", true
		}
	}
	return "", "", false
}

// normVariant normalizes a variant for arch: "7" -> "v7", arm64 "v8" -> "",
// amd64 "v1" -> "", arm "" -> "v7". It reports whether the variant is known.
func normVariant(arch, variant string) (string, bool) {
	if variant != "" && variant[0] >= '0' && variant[0] <= '9' {
		variant = "v" + variant
	}
	switch {
	case arch == "arm64" && variant == "v8":
		return "", true
	case arch == "amd64" && variant == "v1":
		return "", true
	}
	for _, a := range arches {
		if a.name != arch {
			continue
		}
		if variant == "" {
			return a.defVariant, true
		}
		return variant, slices.Contains(a.variants, variant)
	}
	return variant, false
}

// ParsePlatform parses a --platform value. It accepts OS/ARCH[/VARIANT] and,
// with linux implied, ARCH[/VARIANT]: "linux/arm64", "arm64", "linux/arm/v7",
// "arm/v7", "arm" (=> linux/arm/v7), "riscv64", "386"... Aliases are
// normalized: aarch64 -> arm64, x86_64 -> amd64, armhf -> arm/v7,
// arm64/v8 -> arm64.
func ParsePlatform(s string) (v1.Platform, error) {
	in := s
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return v1.Platform{}, fmt.Errorf("empty platform: %s", platformHint)
	}
	parts := strings.Split(s, "/")
	osName, arch, variant := "linux", "", ""
	switch len(parts) {
	case 1:
		arch = parts[0]
	case 2:
		if _, _, isArch := canonArch(parts[0]); isArch {
			arch, variant = parts[0], parts[1]
		} else {
			osName, arch = parts[0], parts[1]
		}
	case 3:
		osName, arch, variant = parts[0], parts[1], parts[2]
	default:
		return v1.Platform{}, fmt.Errorf("unknown platform %q: %s", in, platformHint)
	}
	if !slices.Contains(knownOSes, osName) {
		return v1.Platform{}, fmt.Errorf("unknown platform %q: %s", in, platformHint)
	}
	name, implied, ok := canonArch(arch)
	if !ok {
		return v1.Platform{}, fmt.Errorf("unknown platform %q: %s", in, platformHint)
	}
	if osName != "linux" {
		return v1.Platform{}, fmt.Errorf("unsupported platform %q: xrun runs linux images only, e.g. linux/%s", in, name)
	}
	if variant != "" && implied != "" && variant != implied && "v"+variant != implied {
		return v1.Platform{}, fmt.Errorf("unknown platform %q: %s means %s/%s", in, arch, name, implied)
	}
	if variant == "" {
		variant = implied
	}
	v, ok := normVariant(name, variant)
	if !ok {
		return v1.Platform{}, fmt.Errorf("unknown platform %q: %s", in, variantHint(name))
	}
	return v1.Platform{OS: osName, Architecture: name, Variant: v}, nil
}

func variantHint(arch string) string {
	for _, a := range arches {
		if a.name == arch && len(a.variants) > 0 {
			return fmt.Sprintf("%s variants are %s", arch, strings.Join(a.variants, ", "))
		}
	}
	return fmt.Sprintf("%s has no variants, use linux/%s", arch, arch)
}

// HostPlatform returns the platform of the running binary
// (runtime.GOOS/runtime.GOARCH, variant v7 for arm).
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if p.Architecture == "arm" {
		p.Variant = "v7"
	}
	return p
}

// PlatformString formats p as OS/ARCH[/VARIANT], without the OS version and
// features that v1.Platform.String adds.
func PlatformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// normPlatform normalizes a platform found in an index or config so that it
// compares equal to what ParsePlatform returns for the same platform.
// Unknown architectures are kept as they are (lowercased).
func normPlatform(p v1.Platform) v1.Platform {
	out := v1.Platform{OS: strings.ToLower(p.OS), Architecture: strings.ToLower(p.Architecture), Variant: strings.ToLower(p.Variant)}
	name, implied, ok := canonArch(out.Architecture)
	if !ok {
		return out
	}
	out.Architecture = name
	if out.Variant == "" {
		out.Variant = implied
	}
	if v, ok := normVariant(name, out.Variant); ok || v != "" {
		out.Variant = v
	}
	return out
}

// acceptedVariants lists, best first, the variants an image may have to run
// on want: arm/v7 runs v7, then v6, then v5 code; amd64/v3 runs v3, v2, v1.
func acceptedVariants(want v1.Platform) []string {
	switch want.Architecture {
	case "arm":
		var vs []string
		for _, v := range []string{"v8", "v7", "v6", "v5"} {
			if v <= want.Variant || len(vs) > 0 {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			return []string{want.Variant}
		}
		return vs
	case "amd64":
		var vs []string
		for _, v := range []string{"v4", "v3", "v2"} {
			if want.Variant != "" && v <= want.Variant {
				vs = append(vs, v)
			}
		}
		return append(vs, "")
	}
	return []string{want.Variant}
}

// platformRank returns where have ranks among the platforms acceptable for
// want (0 is best), or -1 if an image for have cannot run as want.
func platformRank(want, have v1.Platform) int {
	want, have = normPlatform(want), normPlatform(have)
	if want.OS != have.OS || want.Architecture != have.Architecture {
		return -1
	}
	return slices.Index(acceptedVariants(want), have.Variant)
}
