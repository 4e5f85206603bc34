package pull

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry mirrors come from the configuration podman, buildah and skopeo
// already read: containers' registries.conf, format v2 (see
// containers-registries.conf(5)). xrun reads its [[registry]] tables
// (prefix, location, insecure, blocked, mirror-by-digest-only) and their
// [[registry.mirror]] tables (location, insecure, pull-from-mirror), with
// the precedence containers/image uses; everything else in the file (short
// name aliases, unqualified-search-registries, v1 tables) is ignored: xrun
// resolves short names like docker does.
//
// Whatever endpoint serves a manifest or blob, it is checked against its
// digest (manifests fetched by digest by go-containerregistry, blobs by the
// store); a tag resolved by a mirror is trusted as containers/image trusts
// it, unless the mirror is digest-only.

// Public environment variables naming the one registries.conf to read
// (then no other file and no drop-in directory is read). XRUN_REGISTRIES_CONF
// wins over CONTAINERS_REGISTRIES_CONF, which containers/image honours.
const (
	EnvRegistriesConf           = "XRUN_REGISTRIES_CONF"
	EnvContainersRegistriesConf = "CONTAINERS_REGISTRIES_CONF"
)

// Default system locations of registries.conf and its drop-in directory.
const (
	systemRegistriesConf  = "/etc/containers/registries.conf"
	systemRegistriesConfD = "/etc/containers/registries.conf.d"
)

// ErrBlocked means registries.conf blocks the registry of the reference.
var ErrBlocked = errors.New("registry blocked by registries.conf")

// registriesConf is the part of a registries.conf (v2) that xrun reads.
type registriesConf struct {
	Registries []registryConf `toml:"registry"`
}

// registryConf is one [[registry]] table.
type registryConf struct {
	Prefix             string       `toml:"prefix"`
	Location           string       `toml:"location"`
	Insecure           bool         `toml:"insecure"`
	Blocked            bool         `toml:"blocked"`
	MirrorByDigestOnly bool         `toml:"mirror-by-digest-only"`
	Mirrors            []mirrorConf `toml:"mirror"`
	// source is the file that defined the entry (for messages).
	source string
}

// mirrorConf is one [[registry.mirror]] table.
type mirrorConf struct {
	Location string `toml:"location"`
	Insecure bool   `toml:"insecure"`
	// PullFromMirror is "all" (default), "digest-only" or "tag-only".
	PullFromMirror string `toml:"pull-from-mirror"`
}

// mirrorConfig is the merged configuration: one entry per prefix.
type mirrorConfig struct {
	regs  []registryConf
	files []string // files read, in order
	// unknown lists keys of [[registry]] tables xrun does not know (a
	// typo such as "mirrors"), as "FILE: KEY".
	unknown []string
}

// RegistriesConfFiles returns the registries.conf files xrun reads, in
// order, later ones overriding earlier ones' entries of the same prefix:
// the file named by $XRUN_REGISTRIES_CONF or $CONTAINERS_REGISTRIES_CONF
// alone; else the user's $XDG_CONFIG_HOME/containers/registries.conf
// (~/.config by default) if it exists, otherwise
// /etc/containers/registries.conf, then the *.conf files of
// /etc/containers/registries.conf.d and of the user's registries.conf.d,
// each in name order. Files that do not exist are left out.
func RegistriesConfFiles() []string {
	for _, env := range []string{EnvRegistriesConf, EnvContainersRegistriesConf} {
		if f := os.Getenv(env); f != "" {
			return []string{f}
		}
	}
	userDir := ""
	if cfg := configHome(); cfg != "" {
		userDir = filepath.Join(cfg, "containers")
	}
	return confFiles(systemRegistriesConf, systemRegistriesConfD,
		filepath.Join(userDir, "registries.conf"), filepath.Join(userDir, "registries.conf.d"), userDir != "")
}

// configHome is $XDG_CONFIG_HOME, else ~/.config ("" if neither is known).
func configHome() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".config")
	}
	return ""
}

// confFiles lists the existing files of the precedence RegistriesConfFiles
// describes, for the given locations.
func confFiles(sysFile, sysDir, userFile, userDir string, haveUser bool) []string {
	var files []string
	main := sysFile
	if _, err := os.Stat(userFile); haveUser && err == nil {
		main = userFile // the user's file replaces the system one
	}
	if _, err := os.Stat(main); err == nil {
		files = append(files, main)
	}
	dirs := []string{sysDir}
	if haveUser {
		dirs = append(dirs, userDir)
	}
	for _, d := range dirs {
		m, _ := filepath.Glob(filepath.Join(d, "*.conf")) // sorted
		files = append(files, m...)
	}
	return files
}

// loadMirrorConfig reads and merges files: an entry of a later file
// replaces the entry with the same prefix of an earlier one. A file that
// does not exist is skipped, unless mustExist (a file the user named).
func loadMirrorConfig(files []string, mustExist bool) (*mirrorConfig, error) {
	c := &mirrorConfig{}
	for _, f := range files {
		var rc registriesConf
		md, err := toml.DecodeFile(f, &rc)
		if errors.Is(err, fs.ErrNotExist) && !mustExist {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read registries config %s: %v: fix the file, or point %s at another one", f, oneLine(err), EnvRegistriesConf)
		}
		c.files = append(c.files, f)
		for _, k := range md.Undecoded() {
			// registry.KEY or registry.mirror.KEY: not what is inside an
			// unknown table, which is reported itself.
			if k[0] == "registry" && (len(k) == 2 || len(k) == 3 && k[1] == "mirror") {
				c.unknown = append(c.unknown, f+": "+k.String())
			}
		}
		for _, r := range rc.Registries {
			r.source = f
			if err := r.normalize(); err != nil {
				return nil, fmt.Errorf("read registries config %s: %v: fix the entry, or point %s at another file", f, err, EnvRegistriesConf)
			}
			if i := slices.IndexFunc(c.regs, func(o registryConf) bool { return o.Prefix == r.Prefix }); i >= 0 {
				c.regs[i] = r
			} else {
				c.regs = append(c.regs, r)
			}
		}
	}
	return c, nil
}

// oneLine joins the lines of err's message (TOML errors can span several).
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// normalize checks an entry and fills its prefix (the location when unset)
// the way containers/image does, with docker.io for index.docker.io.
func (r *registryConf) normalize() error {
	r.Location = confName(r.Location)
	r.Prefix = confName(r.Prefix)
	switch {
	case r.Prefix == "" && r.Location == "":
		return errors.New("a [[registry]] has neither prefix nor location")
	case r.Prefix == "":
		r.Prefix = r.Location
	case strings.HasPrefix(r.Prefix, "*."):
		if strings.ContainsAny(r.Prefix, "/@:") {
			return fmt.Errorf("wildcard prefix %q must be a bare host name such as *.example.com", r.Prefix)
		}
	case r.Location == "":
		return fmt.Errorf("registry %q has no location (only a wildcard prefix such as *.example.com may omit it)", r.Prefix)
	}
	for i := range r.Mirrors {
		m := &r.Mirrors[i]
		m.Location = confName(m.Location)
		if m.Location == "" {
			return fmt.Errorf("a mirror of %q has no location", r.Prefix)
		}
		if r.MirrorByDigestOnly && m.PullFromMirror != "" {
			return fmt.Errorf("registry %q sets mirror-by-digest-only and its mirror %q sets pull-from-mirror (containers/image refuses both)", r.Prefix, m.Location)
		}
		switch m.PullFromMirror {
		case "", "all", "digest-only", "tag-only":
		default:
			return fmt.Errorf("mirror %q has pull-from-mirror = %q; want all, digest-only or tag-only", m.Location, m.PullFromMirror)
		}
	}
	return nil
}

// confName trims a location or prefix as containers/image does (no
// scheme, no trailing slash) and writes Docker Hub as docker.io.
func confName(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	if s == "index.docker.io" || strings.HasPrefix(s, "index.docker.io/") {
		s = "docker.io" + strings.TrimPrefix(s, "index.docker.io")
	}
	return s
}

// refMatchLen returns how many bytes of ref (containers' form,
// "docker.io/library/debian:12") prefix matches, or -1: a prefix matches a
// whole path component, a tag or a digest; "*.example.com" matches the
// registry host of any subdomain of example.com.
func refMatchLen(ref, prefix string) int {
	if sub, ok := strings.CutPrefix(prefix, "*"); ok {
		i := strings.Index(ref, sub)
		if i < 0 || strings.Contains(ref[:i], "/") {
			return -1
		}
		if i += len(sub); i == len(ref) || strings.ContainsRune(":/@", rune(ref[i])) {
			return i
		}
		return -1
	}
	if !strings.HasPrefix(ref, prefix) {
		return -1
	}
	if len(ref) == len(prefix) || strings.ContainsRune(":/@", rune(ref[len(prefix)])) {
		return len(prefix)
	}
	return -1
}

// lookup returns the entry whose prefix matches ref best (the longest
// prefix), or nil, and the matched length.
func (c *mirrorConfig) lookup(ref string) (*registryConf, int) {
	var (
		best  *registryConf
		n     = -1
		bestP = -1
	)
	for i := range c.regs {
		r := &c.regs[i]
		if m := refMatchLen(ref, r.Prefix); m >= 0 && len(r.Prefix) > bestP {
			best, n, bestP = r, m, len(r.Prefix)
		}
	}
	return best, n
}

// endpoint is one place to pull a repository from: a mirror or the
// upstream registry.
type endpoint struct {
	repo   name.Repository
	mirror bool
}

func (e endpoint) String() string { return e.repo.String() }

// containersRef writes r as containers/image does: docker.io, not
// index.docker.io.
func containersRef(r name.Reference) string {
	s := r.Name()
	if rest, ok := strings.CutPrefix(s, name.DefaultRegistry+"/"); ok {
		return "docker.io/" + rest
	}
	return s
}

// endpoints returns where to pull r from, in order: the mirrors of its
// registries.conf entry that serve this kind of reference (tag or digest),
// then the upstream (the entry's location, or r's own registry). Registries
// marked insecure in the configuration are added to o.insecure.
func (o *options) endpoints(c *mirrorConfig, r name.Reference) ([]endpoint, error) {
	ref := containersRef(r)
	reg, n := c.lookup(ref)
	if reg == nil {
		return []endpoint{{repo: r.Context()}}, nil
	}
	if reg.Blocked {
		return nil, newError(ErrBlocked, nil, "pull %s: registry %s is blocked (blocked = true in %s): pull from another registry, or remove the entry", r, reg.Prefix, reg.source)
	}
	rest := ref[n:]
	_, byDigest := r.(name.Digest)
	var eps []endpoint
	for _, m := range reg.Mirrors {
		mode := m.PullFromMirror
		if mode == "" && reg.MirrorByDigestOnly {
			mode = "digest-only"
		}
		if mode == "digest-only" && !byDigest || mode == "tag-only" && byDigest {
			continue
		}
		repo, err := o.confRepo(m.Location+rest, m.Insecure)
		if err != nil {
			return nil, fmt.Errorf("pull %s: mirror %q in %s: %v: fix its location", r, m.Location, reg.source, err)
		}
		eps = append(eps, endpoint{repo: repo, mirror: true})
	}
	up := ref
	if reg.Location != "" {
		up = reg.Location + rest
	}
	repo, err := o.confRepo(up, reg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("pull %s: location %q in %s: %v: fix it", r, reg.Location, reg.source, err)
	}
	return append(eps, endpoint{repo: repo}), nil
}

// confRepo parses the repository of a rewritten reference; insecure (from
// the configuration) lets xrun use plain HTTP and unverified TLS with its
// registry, as --insecure-registry does.
func (o *options) confRepo(ref string, insecure bool) (name.Repository, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Repository{}, err
	}
	reg := r.Context().RegistryStr()
	if insecure && !o.isInsecure(reg) {
		o.insecure = append(o.insecure, reg)
	}
	if o.isInsecure(reg) {
		r, err = name.ParseReference(ref, name.Insecure)
		if err != nil {
			return name.Repository{}, err
		}
	}
	return r.Context(), nil
}

// mirrorConfig returns the registries.conf configuration: the one set with
// WithRegistriesConf, else that of RegistriesConfFiles.
func (o *options) mirrorConfig() (*mirrorConfig, error) {
	if o.mirrors != nil {
		return o.mirrors, nil
	}
	files, named := RegistriesConfFiles(), os.Getenv(EnvRegistriesConf)+os.Getenv(EnvContainersRegistriesConf) != ""
	if o.registriesConf != nil {
		files, named = o.registriesConf, true
	}
	c, err := loadMirrorConfig(files, named)
	if err != nil {
		return nil, err
	}
	if len(c.files) > 0 {
		o.logger.Debug("read registries config", "files", strings.Join(c.files, ","), "registries", len(c.regs))
	}
	if len(c.unknown) > 0 {
		o.logger.Warn("registries config has [[registry]] keys xrun does not know; check their spelling", "keys", strings.Join(c.unknown, ", "))
	}
	o.mirrors = c
	return c, nil
}

// endpointsFor is endpoints with the configuration of o.
func (o *options) endpointsFor(r name.Reference) ([]endpoint, error) {
	c, err := o.mirrorConfig()
	if err != nil {
		return nil, err
	}
	return o.endpoints(c, r)
}

// pullers are the go-containerregistry pullers of one pull: the upstream's,
// with xrun's retries, and the mirrors', which retry a failed request only
// once and give up connecting after mirrorDialTimeout (not 30 s), so that a
// failing mirror costs little before the next endpoint.
type pullers struct{ upstream, mirror *remote.Puller }

// mirrorDialTimeout bounds connecting to a mirror (a host that is down
// behind a firewall that drops packets).
const mirrorDialTimeout = 5 * time.Second

func (o *options) pullers(eps []endpoint) (*pullers, error) {
	up, err := o.puller()
	if err != nil {
		return nil, err
	}
	ps := &pullers{upstream: up, mirror: up}
	if len(eps) > 1 {
		mo := *o
		mo.backoff.Steps = min(mo.backoff.Steps, 2)
		if o.transport == nil {
			t := defaultTransport()
			t.DialContext = (&net.Dialer{Timeout: mirrorDialTimeout, KeepAlive: 30 * time.Second}).DialContext
			mo.transport = t
		}
		if ps.mirror, err = mo.puller(); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// of returns the puller for ep.
func (ps *pullers) of(ep endpoint) *remote.Puller {
	if ep.mirror {
		return ps.mirror
	}
	return ps.upstream
}

// MirrorReport is what `xrun doctor` shows of the mirror configuration:
// the files read, one line per [[registry]] entry, the unknown keys, or
// the error that makes every pull fail.
type MirrorReport struct {
	Files   []string
	Entries []string
	Unknown []string
	Err     error
}

// DescribeMirrors reads the mirror configuration as a pull would.
func DescribeMirrors() MirrorReport {
	files := RegistriesConfFiles()
	explicit := os.Getenv(EnvRegistriesConf) != "" || os.Getenv(EnvContainersRegistriesConf) != ""
	c, err := loadMirrorConfig(files, explicit)
	if err != nil {
		return MirrorReport{Err: err}
	}
	r := MirrorReport{Files: c.files, Unknown: c.unknown}
	for _, reg := range c.regs {
		line := reg.Prefix
		if reg.Location != "" && reg.Location != reg.Prefix {
			line += " -> " + reg.Location
		}
		switch {
		case reg.Blocked:
			line += ": blocked"
		case len(reg.Mirrors) > 0:
			var ms []string
			for _, m := range reg.Mirrors {
				s := m.Location
				if m.Insecure {
					s += " (insecure)"
				}
				if m.PullFromMirror != "" && m.PullFromMirror != "all" {
					s += " (" + m.PullFromMirror + ")"
				}
				ms = append(ms, s)
			}
			line += ": mirrors " + strings.Join(ms, ", ") + ", then the registry"
		}
		r.Entries = append(r.Entries, line+" ["+reg.source+"]")
	}
	return r
}
