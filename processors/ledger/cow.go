package ledger

import (
	"slices"
	"sort"
)

// Copy-on-write. Apply starts from a shallow copy of the receiver: the new Ledger shares the
// receiver's slices until it writes into one, and before writing it takes its own copy
// (mut*); an insertion always builds a new slice (insertSorted). A slice that is shared is
// therefore never written by anyone, which is what lets Apply promise not to mutate the
// receiver while copying only what the event changes. own records, during one Apply, which
// slices this Ledger already copied; Apply clears it before returning, so the next Apply on
// the result copies again before writing (the result's slices may be shared with the ledger
// it came from).
const (
	ownLines        = 1 << iota // Lines
	ownReservations             // Reservations
	ownShipments                // Shipments and every Shipments[i].Lines
	ownReturns                  // Returns and every Returns[i].Lines
	ownDocuments                // Documents (their Lines are never written)
)

func (n *Ledger) mutLines() []LineState {
	if n.own&ownLines == 0 {
		n.s.Lines = slices.Clone(n.s.Lines)
		n.own |= ownLines
	}
	return n.s.Lines
}

func (n *Ledger) mutReservations() []ReservationState {
	if n.own&ownReservations == 0 {
		n.s.Reservations = slices.Clone(n.s.Reservations)
		n.own |= ownReservations
	}
	return n.s.Reservations
}

func (n *Ledger) mutShipments() []ShipmentState {
	if n.own&ownShipments == 0 {
		n.s.Shipments = slices.Clone(n.s.Shipments)
		for i := range n.s.Shipments {
			n.s.Shipments[i].Lines = slices.Clone(n.s.Shipments[i].Lines)
		}
		n.own |= ownShipments
	}
	return n.s.Shipments
}

func (n *Ledger) mutReturns() []ReturnState {
	if n.own&ownReturns == 0 {
		n.s.Returns = slices.Clone(n.s.Returns)
		for i := range n.s.Returns {
			n.s.Returns[i].Lines = slices.Clone(n.s.Returns[i].Lines)
		}
		n.own |= ownReturns
	}
	return n.s.Returns
}

func (n *Ledger) mutDocuments() []BillingDocState {
	if n.own&ownDocuments == 0 {
		n.s.Documents = slices.Clone(n.s.Documents)
		n.own |= ownDocuments
	}
	return n.s.Documents
}

// insertSorted returns a new slice: s with x inserted before the first element not less than
// x. s itself is not written, so it may be shared.
func insertSorted[T any](s []T, x T, less func(a, b T) bool) []T {
	i := sort.Search(len(s), func(i int) bool { return !less(s[i], x) })
	out := make([]T, len(s)+1)
	copy(out, s[:i])
	out[i] = x
	copy(out[i+1:], s[i:])
	return out
}
