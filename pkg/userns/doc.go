// Package userns runs parts of xrun in a new user namespace with a run's id
// mappings (the invoking user as root, its subordinate ranges as ids
// 1..65536): the id maps themselves, the two-stage helper that
// newuidmap/newgidmap need, and removing trees owned by subordinate ids.
// It is the one place that knows how xrun enters a user namespace.
package userns
