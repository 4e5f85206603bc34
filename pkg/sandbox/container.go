package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xrun-dev/xrun/pkg/cache"
	"github.com/xrun-dev/xrun/pkg/fsutil"
	"github.com/xrun-dev/xrun/pkg/userns"
)

// Named containers (--name) keep the overlay's upper layer on disk, in
// <cache>/containers/<name>/{upper,work}, so that what one run writes
// outside bound directories is there in the next run with the same name.
// meta.json beside them records the image it belongs to. A run holds the
// flock <cache>/locks/container-<name>.lock for as long as it uses the
// container: two runs of one name at once would corrupt the overlay.
// The lock file lives outside the container's directory so that removing
// the directory never races with a run taking the lock.

// ContainerMeta is what meta.json records about a named container.
type ContainerMeta struct {
	Name string `json:"name"`
	// Image is the reference as typed; Ref the resolved one.
	Image    string    `json:"image"`
	Ref      string    `json:"ref,omitempty"`
	Platform string    `json:"platform"`
	Digest   string    `json:"digest"` // manifest digest: the identity of the image
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"last_used"`
}

// Container is a named container opened (and locked) by one run.
type Container struct {
	Dir   string
	Upper string
	Work  string
	// Meta is nil until Attach for a container that did not exist yet.
	Meta *ContainerMeta
	lock *fsutil.Lock
}

// ErrNoContainer is returned for a name that has no container.
var ErrNoContainer = errors.New("no such container")

// nameRE is compiled on first use: package-level initialisers run on every
// start of xrun and of the container's init, which never check a name.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`) })

// CheckName checks a container name: letters, digits, '_', '.', '-', not
// starting with a punctuation character, at most 128 characters (docker's
// rule).
func CheckName(name string) error {
	if !nameRE().MatchString(name) {
		return fmt.Errorf("invalid container name %q: use letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

func containersDir(cacheDir string) string { return cache.ContainersDir(cacheDir) }

func containerLockPath(cacheDir, name string) string {
	return cache.LockPath(cacheDir, "container-"+name)
}

// lockContainer takes the container's lock without waiting.
func lockContainer(cacheDir, name string) (*fsutil.Lock, error) {
	lk, err := fsutil.TryLockFile(containerLockPath(cacheDir, name), fsutil.Exclusive)
	if errors.Is(err, fsutil.ErrLocked) {
		return nil, fmt.Errorf("container %q is in use by another xrun run: wait for it to finish, or use another --name", name)
	}
	if err != nil {
		return nil, fmt.Errorf("lock container %q: %w", name, err)
	}
	return lk, nil
}

// OpenContainer locks the named container for one run and reads its
// metadata (Meta is nil when it does not exist yet). Close releases it.
func OpenContainer(cacheDir, name string) (*Container, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	lk, err := lockContainer(cacheDir, name)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(containersDir(cacheDir), name)
	c := &Container{Dir: dir, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), lock: lk}
	m, err := readMeta(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		lk.Unlock()
		return nil, fmt.Errorf("container %q: %w (xrun rm %s removes it)", name, err, name)
	default:
		c.Meta = m
	}
	return c, nil
}

// Attach binds the container to the image the run uses: a new container is
// created for it; an existing one must have been created from the same
// image (manifest digest), since its upper layer is a diff against it.
// lower is the image's rootfs, whose root mode the upper dir takes.
func (c *Container) Attach(m ContainerMeta, lower string) error {
	now := time.Now().UTC()
	if c.Meta != nil {
		if c.Meta.Digest != m.Digest {
			return fmt.Errorf("container %q was created from %s (%s, %s); this run uses %s (%s, %s): "+
				"use another --name, or remove it with xrun rm %s",
				m.Name, c.Meta.Image, c.Meta.Platform, short(c.Meta.Digest), m.Image, m.Platform, short(m.Digest), m.Name)
		}
		c.Meta.LastUsed = now
		return writeMeta(c.Dir, c.Meta)
	}
	if err := os.MkdirAll(filepath.Dir(c.Dir), 0o700); err != nil {
		return err
	}
	// A directory without meta.json is the remains of a creation that was
	// interrupted: start again.
	if err := fsutil.RemoveAll(c.Dir); err != nil {
		return fmt.Errorf("container %q: %w", m.Name, err)
	}
	for _, d := range []string{c.Dir, c.Upper, c.Work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("create container %q: %w", m.Name, err)
		}
	}
	// The overlay's root takes the mode of the upper dir's root.
	mode := os.FileMode(0o755)
	if st, err := os.Stat(lower); err == nil {
		mode = st.Mode().Perm()
	}
	if err := os.Chmod(c.Upper, mode); err != nil {
		return err
	}
	m.Created, m.LastUsed = now, now
	c.Meta = &m
	return writeMeta(c.Dir, c.Meta)
}

// Close releases the container's lock.
func (c *Container) Close() error {
	if c.lock == nil {
		return nil
	}
	c.lock.Unlock()
	return nil
}

func short(digest string) string {
	if _, hex, ok := strings.Cut(digest, ":"); ok && len(hex) > 12 {
		return digest[:len(digest)-len(hex)] + hex[:12]
	}
	return digest
}

func readMeta(dir string) (*ContainerMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	var m ContainerMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, "meta.json"), err)
	}
	return &m, nil
}

// writeMeta replaces meta.json atomically.
func writeMeta(dir string, m *ContainerMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, "meta.json"), ".meta-*.json", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write container metadata: %w", err)
	}
	return nil
}

// ContainerInfo describes a named container for xrun ps.
type ContainerInfo struct {
	ContainerMeta
	// Size is the disk space of its upper layer in bytes (what the runs
	// wrote); files in directories xrun cannot read are not counted.
	Size int64
	// InUse is true while a run holds it.
	InUse bool
}

// ListContainers returns the named containers in cacheDir, sorted by name.
// Directories without readable metadata are listed with the name only.
func ListContainers(cacheDir string) ([]ContainerInfo, error) {
	entries, err := fsutil.ReadDirIfExists(containersDir(cacheDir))
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []ContainerInfo
	for _, e := range entries {
		if !e.IsDir() || CheckName(e.Name()) != nil {
			continue
		}
		dir := filepath.Join(containersDir(cacheDir), e.Name())
		info := ContainerInfo{ContainerMeta: ContainerMeta{Name: e.Name()}}
		if m, err := readMeta(dir); err == nil {
			info.ContainerMeta = *m
			info.Name = e.Name()
		}
		info.Size = diskUsage(filepath.Join(dir, "upper"))
		lk, err := fsutil.TryLockFile(containerLockPath(cacheDir, e.Name()), fsutil.Shared)
		info.InUse = errors.Is(err, fsutil.ErrLocked)
		lk.Unlock()
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b ContainerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// diskUsage sums the allocated size of what is under dir, skipping what
// cannot be read.
func diskUsage(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// RemoveContainer removes a named container. A container in use is refused.
// Files that runs created as other users of the container (subordinate ids:
// apt's _apt, useradd, chown) cannot be removed by the invoking user
// directly; they are removed from a user namespace with the same id mapping
// (see userns.RemoveTree).
func RemoveContainer(cacheDir, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	dir := filepath.Join(containersDir(cacheDir), name)
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("container %q: %w (xrun ps lists them)", name, ErrNoContainer)
	}
	lk, err := lockContainer(cacheDir, name)
	if err != nil {
		return err
	}
	defer lk.Unlock()
	// Move it out of the way first, so that a removal that fails half-way
	// never leaves a container that looks valid but has lost files.
	trash := filepath.Join(containersDir(cacheDir), fmt.Sprintf(".rm-%s-%d", name, os.Getpid()))
	if err := os.Rename(dir, trash); err != nil {
		return fmt.Errorf("remove container %q: %w", name, err)
	}
	if err := userns.RemoveTree(trash); err != nil {
		return fmt.Errorf("remove container %q: %w", name, err)
	}
	_ = os.Remove(containerLockPath(cacheDir, name))
	collectTrash(cacheDir)
	return nil
}

// collectTrash removes the remains of rm runs that were interrupted: the
// .rm-<name>-<pid> directories whose process is gone.
func collectTrash(cacheDir string) {
	entries, _ := os.ReadDir(containersDir(cacheDir))
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".rm-") {
			continue
		}
		i := strings.LastIndexByte(e.Name(), '-')
		pid, err := strconv.Atoi(e.Name()[i+1:])
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		_ = userns.RemoveTree(filepath.Join(containersDir(cacheDir), e.Name()))
	}
}
