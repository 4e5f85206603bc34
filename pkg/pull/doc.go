// Package pull is the registry client: it resolves image references for a
// platform and fetches their manifests, configs and layers (auth,
// transport, mirrors, streaming) into the on-disk store of pkg/store,
// which it imports; the store knows nothing of registries.
package pull
