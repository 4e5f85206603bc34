// Package progress draws download progress bars (one per layer, and a total
// with its speed and ETA) on a terminal, with mpb. It implements
// pull.Progress.
package progress

import (
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/xrun-dev/xrun/pkg/pull"
)

// IsTerminal reports whether w is a terminal (bars are drawn only there).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Bars draws progress bars on w. Nothing is drawn until Start; the zero
// number of bars costs nothing. Call Wait when the pull ends (it returns at
// once if nothing was drawn).
type Bars struct {
	w  io.Writer
	mu sync.Mutex
	p  *mpb.Progress
	// total is the aggregate bar.
	total *mpb.Bar
	force bool
}

// New returns bars drawn on w.
func New(w io.Writer) *Bars { return &Bars{w: w} }

// newForTest draws on a non-terminal w (tests).
func newForTest(w io.Writer) *Bars { return &Bars{w: w, force: true} }

var _ pull.Progress = (*Bars)(nil)

// Start implements pull.Progress: it draws the total bar.
func (b *Bars) Start(count int, total int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil || count == 0 {
		return
	}
	opts := []mpb.ContainerOption{mpb.WithOutput(b.w), mpb.WithRefreshRate(120 * time.Millisecond)}
	if b.force {
		opts = append(opts, mpb.ForceTTY(), mpb.WithAutoRefresh(), mpb.WithWidth(100))
	} else {
		opts = append(opts, mpb.WithConsoleWriter(sizedWriter{cupwriter.New(b.w, false)}))
	}
	b.p = mpb.New(opts...)
	b.total = b.p.AddBar(total,
		mpb.BarPriority(1<<20), // the total stays at the bottom
		mpb.PrependDecorators(
			decor.Name("pull", decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncWidth),
		),
		mpb.AppendDecorators(
			// Layers download in parallel: the total's speed and ETA are
			// averages over the whole pull, not per increment.
			decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncWidth), "done"),
			decor.Name(" "),
			decor.AverageSpeed(decor.SizeB1024(0), "% .1f"),
		),
	)
}

// Layer implements pull.Progress: one bar per layer being downloaded,
// removed when it completes.
func (b *Bars) Layer(i, n int, l pull.Layer) pull.LayerProgress {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		return nop{}
	}
	short := l.Digest.Hex
	if len(short) > 12 {
		short = short[:12]
	}
	bar := b.p.AddBar(l.Size,
		mpb.BarPriority(i),
		mpb.BarRemoveOnComplete(),
		mpb.PrependDecorators(
			decor.Name(layerLabel(i, n)+" "+short, decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncWidth),
		),
		mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)),
	)
	return &layer{bar: bar, total: b.total, start: time.Now(), size: l.Size}
}

func layerLabel(i, n int) string {
	return "layer " + strconv.Itoa(i+1) + "/" + strconv.Itoa(n)
}

// Wait finishes drawing: bars not complete are aborted (a failed or
// cancelled pull), then the container is flushed.
func (b *Bars) Wait() {
	b.mu.Lock()
	p, total := b.p, b.total
	b.mu.Unlock()
	if p == nil {
		return
	}
	if !total.Completed() {
		total.Abort(false)
	}
	p.Wait()
}

type layer struct {
	bar, total *mpb.Bar
	mu         sync.Mutex
	last       time.Time
	start      time.Time
	n, size    int64
}

func (l *layer) Add(n int64) {
	l.mu.Lock()
	now := time.Now()
	since := l.last
	if since.IsZero() {
		since = l.start
	}
	l.last = now
	l.n += n
	l.mu.Unlock()
	l.bar.EwmaIncrInt64(n, now.Sub(since))
	l.total.IncrInt64(n)
}

func (l *layer) Done(err error) {
	if err != nil {
		l.bar.Abort(true)
		return
	}
	// A blob another process stored arrives without bytes: count it as
	// done all the same, so that the total completes.
	l.mu.Lock()
	rest := l.size - l.n
	l.mu.Unlock()
	if rest > 0 {
		l.total.IncrInt64(rest)
	}
	l.bar.SetTotal(-1, true)
}

type nop struct{}

func (nop) Add(int64)  {}
func (nop) Done(error) {}

// sizedWriter is mpb's console writer, except that a terminal reporting no
// size (some CI ptys, serial consoles) counts as 80x24 instead of showing
// nothing.
type sizedWriter struct{ *cupwriter.Writer }

func (w sizedWriter) GetTermSize() (int, int, error) {
	wd, ht, err := w.Writer.GetTermSize()
	if err != nil || wd <= 0 || ht <= 0 {
		return 80, 24, nil
	}
	return wd, ht, nil
}
