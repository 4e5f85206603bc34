package pull

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// defaultIdleTimeout is how long a blob body may send nothing before xrun
// gives up on that connection and fetches the rest again: without it, a
// registry (or a proxy, or a NAT dropping the connection silently) that
// stops sending mid-layer would hang the pull, and every run waiting for
// that image, for ever.
const defaultIdleTimeout = 60 * time.Second

// idleError is the error of a body that sent nothing for a while. It is a
// timeout (net.Error), so it is retried like one: the download resumes
// where it stopped.
type idleError struct{ d time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("the registry stopped sending: nothing received for %v", e.d)
}
func (e *idleError) Timeout() bool   { return true }
func (e *idleError) Temporary() bool { return true }

// idleReader closes the body when no byte arrives for d, which ends a Read
// blocked on it; that Read then returns *idleError.
type idleReader struct {
	rc    io.ReadCloser
	d     time.Duration
	timer *time.Timer

	mu    sync.Mutex
	fired bool
}

func newIdleReader(rc io.ReadCloser, d time.Duration) *idleReader {
	if d <= 0 {
		d = defaultIdleTimeout
	}
	r := &idleReader{rc: rc, d: d}
	r.timer = time.AfterFunc(d, func() {
		r.mu.Lock()
		r.fired = true
		r.mu.Unlock()
		rc.Close()
	})
	return r
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.mu.Lock()
	fired := r.fired
	r.mu.Unlock()
	if fired {
		return 0, &idleError{r.d}
	}
	if n > 0 {
		r.timer.Reset(r.d)
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	return r.rc.Close()
}
