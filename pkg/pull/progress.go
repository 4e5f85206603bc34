package pull

// Progress receives download progress from Stream and Fetch.
// Implementations must be safe for concurrent use.
type Progress interface {
	// Start is called once, before any download, with the number of layer
	// blobs that are not in the store and their total compressed size.
	Start(count int, total int64)
	// Layer is called when the download of layer i (0-based) of an image
	// with n layers begins; the returned LayerProgress gets its bytes.
	Layer(i, n int, l Layer) LayerProgress
}

// LayerProgress follows the download of one blob.
type LayerProgress interface {
	// Add reports n more bytes received; a negative n takes back bytes that
	// are fetched again after a retry.
	Add(n int64)
	// Done ends the download: err is nil when the blob is in the store.
	Done(err error)
}

type noProgress struct{}

func (noProgress) Start(int, int64)                    {}
func (noProgress) Layer(int, int, Layer) LayerProgress { return noProgress{} }
func (noProgress) Add(int64)                           {}
func (noProgress) Done(error)                          {}
