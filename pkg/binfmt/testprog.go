package binfmt

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
)

// TestProgramStatus is the exit status of TestProgram's programs.
const TestProgramStatus = 42

// testPrograms holds, per GOARCH, the machine code of
//
//	exit_group(42)
//
// (load the status and the syscall number, trap), and the ELF fields the
// emulator looks at. The syscall numbers are each arch's __NR_exit_group.
// xrun doctor runs them to prove that a platform really executes: a
// program of a few bytes needs no image, no compiler and no libc.
var testPrograms = map[string]struct {
	code    []byte
	machine elf.Machine
	class   elf.Class
	order   binary.ByteOrder
	flags   uint32
}{
	// mov $42,%ebx; mov $252,%eax; int $0x80
	"386": {code: []byte{0xbb, 42, 0, 0, 0, 0xb8, 252, 0, 0, 0, 0xcd, 0x80},
		machine: elf.EM_386, class: elf.ELFCLASS32, order: binary.LittleEndian},
	// mov $42,%edi; mov $231,%eax; syscall
	"amd64": {code: []byte{0xbf, 42, 0, 0, 0, 0xb8, 231, 0, 0, 0, 0x0f, 0x05},
		machine: elf.EM_X86_64, class: elf.ELFCLASS64, order: binary.LittleEndian},
	// mov r0,#42; mov r7,#248; svc #0 (EABI version 5)
	"arm": {code: words(binary.LittleEndian, 0xe3a0002a, 0xe3a070f8, 0xef000000),
		machine: elf.EM_ARM, class: elf.ELFCLASS32, order: binary.LittleEndian, flags: 0x05000000},
	// movz x0,#42; movz x8,#94; svc #0
	"arm64": {code: words(binary.LittleEndian, 0xd2800540, 0xd2800bc8, 0xd4000001),
		machine: elf.EM_AARCH64, class: elf.ELFCLASS64, order: binary.LittleEndian},
	// addi.w $a0,$zero,42; addi.w $a7,$zero,94; syscall 0 (LP64D)
	"loong64": {code: words(binary.LittleEndian, 0x0280a804, 0x0281780b, 0x002b0000),
		machine: elf.EM_LOONGARCH, class: elf.ELFCLASS64, order: binary.LittleEndian, flags: 0x43},
	// addiu $a0,$zero,42; addiu $v0,$zero,5205; syscall (n64, mips64r2)
	"mips64le": {code: words(binary.LittleEndian, 0x2404002a, 0x24021455, 0x0000000c),
		machine: elf.EM_MIPS, class: elf.ELFCLASS64, order: binary.LittleEndian, flags: 0x80000000},
	// addiu $a0,$zero,42; addiu $v0,$zero,4246; syscall (o32, mips32r2)
	"mipsle": {code: words(binary.LittleEndian, 0x2404002a, 0x24021096, 0x0000000c),
		machine: elf.EM_MIPS, class: elf.ELFCLASS32, order: binary.LittleEndian, flags: 0x70001000},
	// li r3,42; li r0,234; sc (ELFv2)
	"ppc64le": {code: words(binary.LittleEndian, 0x3860002a, 0x380000ea, 0x44000002),
		machine: elf.EM_PPC64, class: elf.ELFCLASS64, order: binary.LittleEndian, flags: 2},
	// addi a0,zero,42; addi a7,zero,94; ecall
	"riscv64": {code: words(binary.LittleEndian, 0x02a00513, 0x05e00893, 0x00000073),
		machine: elf.EM_RISCV, class: elf.ELFCLASS64, order: binary.LittleEndian},
	// lghi %r2,42; svc 248
	"s390x": {code: []byte{0xa7, 0x29, 0x00, 42, 0x0a, 248},
		machine: elf.EM_S390, class: elf.ELFCLASS64, order: binary.BigEndian},
}

func words(order binary.AppendByteOrder, ws ...uint32) []byte {
	b := make([]byte, 0, 4*len(ws))
	for _, w := range ws {
		b = order.AppendUint32(b, w)
	}
	return b
}

// TestProgram returns a complete static ELF executable for goarch that
// exits with TestProgramStatus and does nothing else.
func TestProgram(goarch string) ([]byte, error) {
	p, ok := testPrograms[goarch]
	if !ok {
		return nil, fmt.Errorf("no test program for %q", goarch)
	}
	const base = 0x400000 // 64 KiB aligned: fine for every page size
	var buf bytes.Buffer
	ident := [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(p.class), 0, byte(elf.EV_CURRENT)}
	if p.order == binary.BigEndian {
		ident[elf.EI_DATA] = byte(elf.ELFDATA2MSB)
	} else {
		ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	}
	if p.class == elf.ELFCLASS64 {
		const hdrs = 64 + 56
		size := uint64(hdrs + len(p.code))
		binary.Write(&buf, p.order, elf.Header64{
			Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(p.machine), Version: uint32(elf.EV_CURRENT),
			Entry: base + hdrs, Phoff: 64, Flags: p.flags, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64,
		})
		binary.Write(&buf, p.order, elf.Prog64{
			Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: 0, Vaddr: base, Paddr: base,
			Filesz: size, Memsz: size, Align: 0x10000,
		})
	} else {
		const hdrs = 52 + 32
		size := uint32(hdrs + len(p.code))
		binary.Write(&buf, p.order, elf.Header32{
			Ident: ident, Type: uint16(elf.ET_EXEC), Machine: uint16(p.machine), Version: uint32(elf.EV_CURRENT),
			Entry: base + hdrs, Phoff: 52, Flags: p.flags, Ehsize: 52, Phentsize: 32, Phnum: 1, Shentsize: 40,
		})
		binary.Write(&buf, p.order, elf.Prog32{
			Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Off: 0, Vaddr: base, Paddr: base,
			Filesz: size, Memsz: size, Align: 0x10000,
		})
	}
	buf.Write(p.code)
	return buf.Bytes(), nil
}
