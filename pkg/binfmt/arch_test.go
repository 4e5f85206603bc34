package binfmt

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/xrun-dev/xrun/internal/testutil"
)

func TestArchesWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for i, a := range Arches {
		if seen[a.GOARCH] || seen["qemu:"+a.Name] {
			t.Errorf("row %d (%s): duplicate", i, a.GOARCH)
		}
		seen[a.GOARCH], seen["qemu:"+a.Name] = true, true
		if i > 0 && Arches[i-1].GOARCH >= a.GOARCH {
			t.Errorf("row %d (%s): table not sorted by GOARCH", i, a.GOARCH)
		}
		if len(a.Magic) != len(a.Mask) {
			t.Errorf("%s: len(Magic) = %d, len(Mask) = %d", a.GOARCH, len(a.Magic), len(a.Mask))
		}
		if !bytes.HasPrefix(a.Magic, []byte("\x7fELF")) || !bytes.HasPrefix(a.Mask, []byte("\xff\xff\xff\xff")) {
			t.Errorf("%s: magic/mask do not require the ELF signature", a.GOARCH)
		}
		// Magic bits outside the mask are allowed (qemu's x86 rows have
		// them in EI_CLASS/EI_DATA): the kernel masks the magic on register.
		got, err := Lookup(a.GOARCH)
		if err != nil || got != &Arches[i] {
			t.Errorf("Lookup(%q) = %v, %v; want row %d", a.GOARCH, got, err, i)
		}
		// The row matches its own samples (ET_EXEC and ET_DYN).
		for _, s := range sampleHeaders(&a) {
			if !a.Matches(s) {
				t.Errorf("%s: does not match its own sample header % x", a.GOARCH, s[:20])
			}
		}
	}
}

func TestLookupUnknown(t *testing.T) {
	_, err := Lookup("sparc64")
	if !errors.Is(err, ErrUnknownArch) {
		t.Fatalf("Lookup(sparc64) error = %v, want ErrUnknownArch", err)
	}
	want := `no emulation known for architecture "sparc64"; xrun supports: 386, amd64, arm, arm64, loong64, mips64le, mipsle, ppc64le, riscv64, s390x`
	if err.Error() != want {
		t.Errorf("Lookup(sparc64) error =\n%s\nwant\n%s", err, want)
	}
}

// matching returns the GOARCHes of the rows matching header.
func matching(header []byte) []string {
	var got []string
	for i := range Arches {
		if Arches[i].Matches(header) {
			got = append(got, Arches[i].GOARCH)
		}
	}
	return got
}

// TestArchesMatchRealBinaries checks that exactly the right row matches
// real ELF files: Go programs cross-compiled for every arch, and host files.
func TestArchesMatchRealBinaries(t *testing.T) {
	bins := crossBinaries(t)
	for _, tg := range crossTargets {
		t.Run(tg.goarch, func(t *testing.T) {
			h := elfHeader(t, bins[tg.goarch])
			if diff := cmp.Diff([]string{tg.goarch}, matching(h)); diff != "" {
				t.Errorf("rows matching a GOARCH=%s binary (-want +got):\n%s", tg.goarch, diff)
			}
		})
	}
	// Host binaries: Debian's static qemus (static-pie, ET_DYN) and a
	// dynamic PIE. They are ELFs for runtime.GOARCH.
	hostFiles, _ := filepath.Glob("/usr/bin/qemu-*-static")
	hostFiles = append(hostFiles, "/bin/ls")
	for _, p := range hostFiles {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if diff := cmp.Diff([]string{runtime.GOARCH}, matching(elfHeader(t, p))); diff != "" {
			t.Errorf("rows matching host file %s (-want +got):\n%s", p, diff)
		}
	}
}

// TestArchesRejectNeighbours checks headers of arches that qemu handles
// with other emulators than the table's rows.
func TestArchesRejectNeighbours(t *testing.T) {
	bins := crossBinaries(t)
	mutate := func(goarch string, f func(h []byte)) []byte {
		h := elfHeader(t, bins[goarch])
		f(h)
		return h
	}
	for name, h := range map[string][]byte{
		// n32 ABI (EF_MIPS_ABI2): qemu-mipsn32el, not qemu-mipsel.
		"mipsn32el": mutate("mipsle", func(h []byte) { h[36] |= 0x20 }),
		// Big-endian aarch64 (qemu-aarch64_be).
		"aarch64_be": mutate("arm64", func(h []byte) { h[5] = 2; h[18], h[19] = h[19], h[18] }),
		// A relocatable object (ET_REL) is not executed.
		"arm64 ET_REL": mutate("arm64", func(h []byte) { h[16] = 1 }),
		"truncated":    mutate("arm64", func(h []byte) {})[:19],
	} {
		if got := matching(h); len(got) != 0 {
			t.Errorf("%s header matches %v, want no row", name, got)
		}
	}
}

// TestArchesAgainstDebian compares each row with Debian's
// /usr/lib/binfmt.d/qemu-NAME.conf (package qemu-user-static), when present.
// Debian ships none for the host's own arch (e.g. i386 and x86_64 on amd64).
func TestArchesAgainstDebian(t *testing.T) {
	compared := 0
	for _, a := range Arches {
		conf := "/usr/lib/binfmt.d/qemu-" + a.Name + ".conf"
		data, err := os.ReadFile(conf)
		if errors.Is(err, os.ErrNotExist) {
			t.Logf("%s: no %s, not compared", a.GOARCH, conf)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		magic, mask, err := parseConf(string(data))
		if err != nil {
			t.Fatalf("%s: %v", conf, err)
		}
		if !bytes.Equal(magic, a.Magic) || !bytes.Equal(mask, a.Mask) {
			t.Errorf("%s differs from %s:\nmagic % x\nwant  % x\nmask  % x\nwant  % x", a.GOARCH, conf, a.Magic, magic, a.Mask, mask)
		}
		compared++
	}
	if compared == 0 {
		testutil.SkipOrFail(t, "no /usr/lib/binfmt.d/qemu-*.conf (install qemu-user-static)")
	}
}

// parseConf reads the magic and mask of a binfmt.d line
// ":name:M:offset:magic:mask:interp:flags".
func parseConf(data string) (magic, mask []byte, err error) {
	for _, line := range strings.Split(data, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line[1:], line[:1])
		if len(f) < 7 || f[1] != "M" {
			return nil, nil, errors.New("not an M line: " + line)
		}
		if magic, err = unescape(f[3]); err == nil {
			mask, err = unescape(f[4])
		}
		return magic, mask, err
	}
	return nil, nil, errors.New("no line")
}

func unescape(s string) ([]byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return nil, err
			}
			b = append(b, byte(v))
			i += 3
			continue
		}
		b = append(b, s[i])
	}
	return b, nil
}

func TestUnescape(t *testing.T) {
	got, err := unescape(`\x7fELF\x02\x00`)
	if err != nil || !slices.Equal(got, []byte("\x7fELF\x02\x00")) {
		t.Errorf("unescape = % x, %v", got, err)
	}
}
