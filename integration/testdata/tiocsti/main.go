// Command tiocsti is the attacker of xrun's terminal tests
// (integration/security_tty_test.go): run inside a container, it looks for a
// terminal among its standard descriptors and tries to type its argument
// into the terminal's input queue with ioctl(TIOCSTI), directly, through a
// read-write reopen of /proc/self/fd/N, and after setsid + TIOCSCTTY. It
// prints one report line per attempt and "terminals: ..." with the
// descriptors that are terminals ("none" when there is none).
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

const (
	tcgets    = 0x5401
	tiocsti   = 0x5412
	tiocsctty = 0x540E
)

func ioctl(fd int, req, arg uintptr) syscall.Errno {
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, arg)
	return e
}

func isTerminal(fd int) bool {
	var t [64]byte
	return ioctl(fd, tcgets, uintptr(unsafe.Pointer(&t[0]))) == 0
}

// inject types s into fd's terminal; it returns "ok" or the first error.
func inject(fd int, s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if e := ioctl(fd, tiocsti, uintptr(unsafe.Pointer(&c))); e != 0 {
			return e.Error()
		}
	}
	return "ok"
}

func main() {
	payload := strings.ReplaceAll(strings.Join(os.Args[1:], " "), `\n`, "\n")
	var ttys []string
	for fd := 0; fd <= 2; fd++ {
		if !isTerminal(fd) {
			fmt.Printf("fd %d: not a terminal\n", fd)
			continue
		}
		ttys = append(ttys, fmt.Sprint(fd))
		fmt.Printf("fd %d: terminal; TIOCSTI: %s\n", fd, inject(fd, payload))
		if f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR, 0); err == nil {
			fmt.Printf("fd %d: reopened read-write; TIOCSTI: %s\n", fd, inject(int(f.Fd()), payload))
			f.Close()
		} else {
			fmt.Printf("fd %d: reopen: %v\n", fd, err)
		}
	}
	if len(ttys) > 0 {
		_, err := syscall.Setsid()
		fmt.Printf("setsid: %v\n", err)
		for _, fd := range []int{0, 1, 2} {
			if isTerminal(fd) {
				e := ioctl(fd, tiocsctty, 0)
				fmt.Printf("fd %d: TIOCSCTTY: %v; TIOCSTI: %s\n", fd, e, inject(fd, payload))
			}
		}
	}
	if len(ttys) == 0 {
		ttys = []string{"none"}
	}
	fmt.Printf("terminals: %s\n", strings.Join(ttys, ","))
}
