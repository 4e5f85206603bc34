// Package pull resolves image references for a platform and fetches their
// manifests, configs and layers into a content-addressed blob store.
package pull
