package binfmt

import (
	"debug/elf"
	"fmt"
)

// IsStatic reports whether the ELF file at path has no PT_INTERP, i.e. runs
// without a dynamic loader. Only such an emulator can run inside a foreign
// rootfs: a dynamic one looks for its loader (and libc) in the guest's root.
// Static-pie builds (Debian's qemu-*-static) count as static.
func IsStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
