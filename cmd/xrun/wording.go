package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/xrun-dev/xrun/pkg/pull"
)

// cliWording adds to a library error what only the CLI can say: which
// flag led there and which command gets out of it. The libraries name
// what happened (a typed error) and leave the advice to their caller.
func cliWording(err error) error {
	var nc *pull.NotCachedError
	if !errors.As(err, &nc) {
		return err
	}
	var full error
	if nc.Layer != "" {
		full = fmt.Errorf("layer %s of %s is not in the cache and --pull=never was given: run `xrun pull --platform %s %s` or use --pull=missing",
			nc.Layer, nc.Ref, nc.Platform, nc.Ref)
	} else {
		full = fmt.Errorf("image %s for %s is not in the cache and --pull=never was given: run `xrun pull --platform %s %s` or use --pull=missing",
			nc.Ref, nc.Platform, nc.Platform, nc.Ref)
	}
	// The library's sentence, wherever callers wrapped it, becomes the
	// CLI's; the chain stays for errors.Is and the hints.
	return &reworded{err: err, msg: strings.Replace(err.Error(), nc.Error(), full.Error(), 1)}
}

// reworded is err with another message.
type reworded struct {
	err error
	msg string
}

func (e *reworded) Error() string { return e.msg }
func (e *reworded) Unwrap() error { return e.err }
