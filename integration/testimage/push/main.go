// Command push builds xrun's test images (package testimage) and pushes them
// to a registry, printing the references it wrote, one a line:
//
//	go run ./integration/testimage/push -registry 127.0.0.1:5000 [-debs DIR]
//
// hack/demo.sh uses it. The .debs come from hack/setup.sh.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/xrun-dev/xrun/integration/testimage"
)

func main() {
	registry := flag.String("registry", "127.0.0.1:5000", "registry `host:port` to push to (plain HTTP on localhost)")
	debs := flag.String("debs", "", "`dir` of busybox-static_*_<arch>.deb (default: integration/testdata/debs of the checkout)")
	work := flag.String("work", "", "`dir` for the extracted and compiled binaries (default: a temporary dir, removed)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "push: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*registry, *debs, *work); err != nil {
		fmt.Fprintf(os.Stderr, "push: %v\n", err)
		os.Exit(1)
	}
}

func run(registry, debs, work string) error {
	if work == "" {
		d, err := os.MkdirTemp("", "xrun-testimage-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		work = d
	}
	im, err := testimage.Build(debs, work)
	if err != nil {
		return err
	}
	if err := im.Push(registry); err != nil {
		return err
	}
	for _, repo := range testimage.Repos {
		fmt.Println(registry + "/" + repo)
	}
	glibc, err := im.PushGlibc(registry)
	if err != nil {
		return err
	}
	fmt.Println(glibc)
	return nil
}
