package binfmt

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Arch is one row of the arch table: data, not code.
type Arch struct {
	// Name is qemu's name for the architecture: the emulator is
	// qemu-Name-static, Debian's handler /usr/lib/binfmt.d/qemu-Name.conf.
	Name string
	// GOARCH is the OCI (and Go) architecture name.
	GOARCH string
	// Variants lists the OCI variants the emulator runs; empty means any.
	Variants []string
	// Magic and Mask are binfmt_misc's "M" matcher at offset 0: an ELF
	// header h matches when (h[i] ^ Magic[i]) & Mask[i] == 0 for every i.
	// The values are Debian's /usr/lib/binfmt.d/qemu-Name.conf (qemu-user-static
	// 1:7.2, the same as qemu's scripts/qemu-binfmt-conf.sh); Debian ships no
	// file for the host's own arch, so the x86 rows come from qemu's script.
	Magic, Mask []byte
	// NativeOn lists host GOARCHes whose CPUs can run this arch's binaries
	// without emulation (possibly: see Decide for the checks made).
	NativeOn []string
}

// Arches is the arch table. Keep it sorted by GOARCH; arch_test.go checks
// every row against real ELF files and Debian's binfmt.d files. Its rows
// share one shape (a duplicate finder reports them as copied lines): they
// are data, kept as the literal bytes of Debian's files so that each row
// diffs against its source; computing them from (class, e_machine) would
// hide the per-arch mask quirks (mips's e_flags, ppc64le's last byte).
var Arches = []Arch{
	{
		Name:   "i386",
		GOARCH: "386",
		// qemu's i386_magic: e_ident[EI_CLASS]=32-bit, e_machine=EM_386 (3).
		Magic:    []byte("\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x03\x00"),
		Mask:     []byte("\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
		NativeOn: []string{"amd64"},
	},
	{
		Name:   "x86_64",
		GOARCH: "amd64",
		// qemu's x86_64_magic: 64-bit, e_machine=EM_X86_64 (0x3e).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
	},
	{
		Name:     "arm",
		GOARCH:   "arm",
		Variants: []string{"v5", "v6", "v7"},
		// 32-bit little-endian, e_machine=EM_ARM (0x28).
		Magic: []byte("\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
		// Only on CPUs with AArch32 at EL0 (many recent arm64 server and
		// Apple CPUs have none); Decide probes it.
		NativeOn: []string{"arm64"},
	},
	{
		Name:   "aarch64",
		GOARCH: "arm64",
		// 64-bit little-endian, e_machine=EM_AARCH64 (0xb7).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
	},
	{
		Name:   "loongarch64",
		GOARCH: "loong64",
		// 64-bit little-endian, e_machine=EM_LOONGARCH (0x102).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x02\x01"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\x00\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
	},
	{
		Name:   "mips64el",
		GOARCH: "mips64le",
		// 64-bit little-endian, e_machine=EM_MIPS (8).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
	},
	{
		Name:   "mipsel",
		GOARCH: "mipsle",
		// 32-bit little-endian, e_machine=EM_MIPS (8); byte 36 is the low byte
		// of e_flags, whose EF_MIPS_ABI2 bit (0x20) must be clear: with it set
		// the binary is n32 (qemu-mipsn32el), not o32.
		Magic: []byte("\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00" +
			"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		Mask: []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff" +
			"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x20"),
	},
	{
		Name:   "ppc64le",
		GOARCH: "ppc64le",
		// 64-bit little-endian, e_machine=EM_PPC64 (0x15).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00"),
	},
	{
		Name:   "riscv64",
		GOARCH: "riscv64",
		// 64-bit little-endian, e_machine=EM_RISCV (0xf3).
		Magic: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"),
	},
	{
		Name:   "s390x",
		GOARCH: "s390x",
		// 64-bit big-endian, e_machine=EM_S390 (0x16); e_type is bytes 16-17.
		Magic: []byte("\x7fELF\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16"),
		Mask:  []byte("\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff"),
	},
}

// ErrUnknownArch is returned (wrapped) by Lookup and Decide for an
// architecture that is not in Arches.
var ErrUnknownArch = errors.New("unknown architecture")

// Lookup returns the row of Arches for an OCI/Go architecture name.
func Lookup(goarch string) (*Arch, error) {
	for i := range Arches {
		if Arches[i].GOARCH == goarch {
			return &Arches[i], nil
		}
	}
	return nil, &planError{kind: ErrUnknownArch, msg: fmt.Sprintf(
		"no emulation known for architecture %q; xrun supports: %s", goarch, supported())}
}

func supported() string {
	names := make([]string, 0, len(Arches))
	for _, a := range Arches {
		names = append(names, a.GOARCH)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Matches reports whether binfmt_misc would hand a file starting with
// elfHeader to this arch's handler. Like the kernel, a header shorter than
// the magic does not match.
func (a *Arch) Matches(elfHeader []byte) bool {
	return matches(elfHeader, a.Magic, a.Mask)
}

// matches is the kernel's check (fs/binfmt_misc.c check_file): every byte
// of the header under the mask equals the magic under the mask.
func matches(h, magic, mask []byte) bool {
	if len(h) < len(magic) || len(mask) != len(magic) {
		return false
	}
	for i := range magic {
		if (h[i]^magic[i])&mask[i] != 0 {
			return false
		}
	}
	return true
}

// supportsVariant reports whether the arch runs binaries of an OCI variant.
func (a *Arch) supportsVariant(variant string) bool {
	return variant == "" || len(a.Variants) == 0 || slices.Contains(a.Variants, variant)
}
