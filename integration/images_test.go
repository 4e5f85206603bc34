//go:build integration

package integration

import "github.com/xrun-dev/xrun/integration/testimage"

// The test images come from package testimage; these are the names the
// tests use for its repositories, platforms and applets.
const (
	busyboxRepo = testimage.BusyboxRepo
	layersRepo  = testimage.LayersRepo
)

// testPlatform is one platform of the test images.
type testPlatform = testimage.Platform

var (
	platforms = testimage.Platforms
	applets   = testimage.Applets
)

func platformByName(name string) testPlatform {
	p, ok := testimage.PlatformByName(name)
	if !ok {
		panic("no test platform " + name)
	}
	return p
}
