// Package layers prints the isolation and audit layers report shared by
// `deputy doctor` (from the daemon) and `deputyd --doctor` (a local probe).
package layers

import (
	"fmt"
	"io"
	"text/tabwriter"

	deputyv1 "github.com/deputyhq/deputy/proto/deputy/v1"
)

// Print writes the layers as a table under a line naming their source.
func Print(w io.Writer, source string, layers []*deputyv1.Layer) error {
	fmt.Fprintln(w, "layers, from the "+source+":")
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tACTIVE\tDETAIL\tCONSEQUENCE")
	for _, l := range layers {
		active := "no"
		if l.GetActive() {
			active = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.GetName(), active, l.GetDetail(), l.GetConsequence())
	}
	return tw.Flush()
}
