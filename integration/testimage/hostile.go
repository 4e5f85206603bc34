package testimage

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FifoPasswdRepo is a hostile image of the host's platform (PushFifoPasswd):
// the base test image whose /etc/passwd (or /etc/group) is a named pipe,
// with User "app" in its config, so that xrun must read the file to resolve
// the user. Opening a FIFO for reading blocks until a writer comes.
const FifoPasswdRepo = "xrun-test/fifo-passwd"

// PushFifoPasswd builds FifoPasswdRepo:TAG with file ("passwd" or "group")
// a FIFO and pushes it to the registry at addr. It returns the reference.
func (im *Images) PushFifoPasswd(addr, file string) (string, error) {
	p, bin, err := im.hostBinary()
	if err != nil {
		return "", err
	}
	var es []entry
	for _, e := range baseEntries(p.BinName(), bin) {
		if e.path == "etc/"+file {
			e = entry{path: e.path, mode: 0o644, fifo: true}
		}
		es = append(es, e)
	}
	img, err := buildImageWith(p.OS, p.Arch, p.Variant, true, func(c *v1.Config) {
		c.Cmd = []string{"/bin/true"}
		c.User = "app"
	}, es)
	if err != nil {
		return "", err
	}
	return pushImage(addr, FifoPasswdRepo+":"+file, img)
}
