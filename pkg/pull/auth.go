package pull

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/docker/docker-credential-helpers/client"
	"github.com/docker/docker-credential-helpers/credentials"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/xrun-dev/xrun/pkg/fsutil"
)

// DefaultKeychain finds registry credentials where docker and podman keep
// them: docker's config.json ($DOCKER_CONFIG, else ~/.docker) and its
// credential helpers, then podman's auth.json files (PodmanAuthFiles). The
// first that has credentials for the registry wins; none means anonymous.
func DefaultKeychain() authn.Keychain {
	return authn.NewMultiKeychain(authn.DefaultKeychain, podmanKeychain{})
}

// PodmanAuthFiles lists, in the order podman reads them, the auth.json
// files that may hold credentials: $REGISTRY_AUTH_FILE,
// $XDG_RUNTIME_DIR/containers/auth.json, then
// $XDG_CONFIG_HOME/containers/auth.json (~/.config by default).
func PodmanAuthFiles() []string {
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		files = append(files, filepath.Join(d, "containers", "auth.json"))
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cfg = filepath.Join(home, ".config")
		}
	}
	if cfg != "" {
		files = append(files, filepath.Join(cfg, "containers", "auth.json"))
	}
	return files
}

// podmanKeychain reads podman's auth.json files (docker's format), all of
// them, which authn.DefaultKeychain does only when docker has no config.
type podmanKeychain struct{}

func (podmanKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	for _, path := range PodmanAuthFiles() {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		cf, err := config.LoadFromReader(bytes.NewReader(b))
		if err != nil {
			continue // a broken file must not break anonymous pulls
		}
		for _, key := range []string{target.String(), target.RegistryStr()} {
			if key == name.DefaultRegistry {
				key = authn.DefaultAuthKey
			}
			ac, err := cf.GetAuthConfig(key)
			if err != nil {
				continue
			}
			if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
				continue
			}
			return authn.FromConfig(authn.AuthConfig{
				Username: ac.Username, Password: ac.Password, Auth: ac.Auth,
				IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// DockerConfigPath returns the docker config file login writes:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func DockerConfigPath() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the docker config: %w: set DOCKER_CONFIG or HOME", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

// authKey is the key docker uses for registry in config.json: the
// canonical registry name, and its historical URL for Docker Hub.
func authKey(registry string) string {
	reg := registryName(registry)
	if reg == name.DefaultRegistry {
		return authn.DefaultAuthKey
	}
	return reg
}

// ErrUnauthorized means the registry refused the credentials.
var ErrUnauthorized = errors.New("unauthorized")

// Login checks user and password against registry (host[:port], or a
// docker.io-style name) and saves them as docker login does: in the
// credential helper config.json names for the registry, else base64 in
// config.json's "auths" (written atomically, mode 0600). It returns where
// they went.
func Login(ctx context.Context, registry, user, password string, opts ...Option) (string, error) {
	o := makeOptions(opts)
	reg := registryName(registry)
	var nopts []name.Option
	if o.isInsecure(reg) {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.NewRegistry(reg, nopts...)
	if err != nil {
		return "", fmt.Errorf("invalid registry %q: %w", registry, err)
	}
	if err := checkLogin(ctx, r, user, password, o); err != nil {
		return "", err
	}
	path, err := DockerConfigPath()
	if err != nil {
		return "", err
	}
	key := authKey(reg)
	cfg, err := readDockerConfig(path)
	if err != nil {
		return "", err
	}
	if helper := cfg.helper(key); helper != "" {
		prog := client.NewShellProgramFunc("docker-credential-" + helper)
		if err := client.Store(prog, &credentials.Credentials{ServerURL: key, Username: user, Secret: password}); err != nil {
			return "", fmt.Errorf("store credentials with docker-credential-%s: %w", helper, err)
		}
		return "docker-credential-" + helper, nil
	}
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	entry, _ := json.Marshal(map[string]string{"auth": auth})
	cfg.auths[key] = entry
	return path, cfg.write(path)
}

// Logout removes the credentials for registry from docker's config (or
// its credential helper). It reports whether there were any.
func Logout(registry string) (string, bool, error) {
	path, err := DockerConfigPath()
	if err != nil {
		return "", false, err
	}
	key := authKey(registry)
	cfg, err := readDockerConfig(path)
	if err != nil {
		return "", false, err
	}
	removed := false
	if helper := cfg.helper(key); helper != "" {
		prog := client.NewShellProgramFunc("docker-credential-" + helper)
		if err := client.Erase(prog, key); err != nil && !credentials.IsErrCredentialsNotFoundMessage(err.Error()) {
			return "", false, fmt.Errorf("erase credentials with docker-credential-%s: %w", helper, err)
		} else if err == nil {
			removed = true
		}
	}
	if _, ok := cfg.auths[key]; ok {
		delete(cfg.auths, key)
		removed = true
		if err := cfg.write(path); err != nil {
			return "", false, err
		}
	}
	return path, removed, nil
}

// checkLogin asks the registry for /v2/ with the credentials: a token
// registry checks them at the token exchange, a basic-auth one on the
// request itself.
func checkLogin(ctx context.Context, r name.Registry, user, password string, o *options) error {
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	rt := transport.NewRetry(o.roundTripper(), transport.WithRetryBackoff(o.backoff),
		transport.WithRetryStatusCodes(retryStatusCodes...), transport.WithRetryPredicate(transient))
	rt = transport.NewUserAgent(rt, userAgent)
	tr, err := transport.NewWithContext(ctx, r, auth, rt, nil)
	if err != nil {
		return loginError(r.RegistryStr(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Scheme()+"://"+r.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return loginError(r.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return loginError(r.RegistryStr(), err)
	}
	return nil
}

func loginError(reg string, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden) {
		return newError(ErrUnauthorized, err, "login to %s: the registry refused the user name or password", reg)
	}
	return fmt.Errorf("login to %s: %w", reg, registryError(reg, err))
}

// dockerConfig is docker's config.json, kept as raw JSON so that what xrun
// does not know (proxies, plugins, aliases...) is written back unchanged.
type dockerConfig struct {
	raw   map[string]json.RawMessage
	auths map[string]json.RawMessage
}

func readDockerConfig(path string) (*dockerConfig, error) {
	c := &dockerConfig{raw: map[string]json.RawMessage{}, auths: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return c, nil
	}
	if err := json.Unmarshal(b, &c.raw); err != nil {
		return nil, fmt.Errorf("read %s: %w: fix or remove the file", path, err)
	}
	if a, ok := c.raw["auths"]; ok {
		if err := json.Unmarshal(a, &c.auths); err != nil {
			return nil, fmt.Errorf("read %s: auths: %w: fix or remove the file", path, err)
		}
	}
	return c, nil
}

// helper returns the credential helper config.json names for key, or "".
func (c *dockerConfig) helper(key string) string {
	var helpers map[string]string
	if b, ok := c.raw["credHelpers"]; ok && json.Unmarshal(b, &helpers) == nil && helpers[key] != "" {
		return helpers[key]
	}
	var store string
	if b, ok := c.raw["credsStore"]; ok && json.Unmarshal(b, &store) == nil {
		return store
	}
	return ""
}

// write saves the config atomically (temp file, fsync, rename) with mode
// 0600: it holds credentials.
func (c *dockerConfig) write(path string) error {
	a, err := json.Marshal(c.auths)
	if err != nil {
		return err
	}
	c.raw["auths"] = a
	b, err := json.MarshalIndent(c.raw, "", "\t")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, filepath.Base(path)+".tmp-*", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
