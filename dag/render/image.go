package render

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"sync"

	"github.com/goccy/go-graphviz"
	"github.com/trellisflow/trellis/dag"
)

// go-graphviz runs one WebAssembly instance per process, which is not safe
// for concurrent use; every call into it holds gvMu. The instance is made on
// first use and kept: making one costs far more than a render.
var (
	gvMu sync.Mutex
	gv   *graphviz.Graphviz
)

// SVG writes f as an SVG image rendered by Graphviz's dot layout.
func SVG(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	return renderImage(ctx, w, f, opts, graphviz.SVG)
}

// PNG writes f as a PNG image: Graphviz's SVG, drawn in Go at two pixels
// per point (scaled down if the image would pass 16 megapixels).
func PNG(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options) error {
	var svg bytes.Buffer
	if err := renderImage(ctx, &svg, f, opts, graphviz.SVG); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	img, err := rasterize(svg.Bytes())
	if err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	return enc.Encode(w, img)
}

func renderImage(ctx context.Context, w io.Writer, f *dag.Flow, opts *Options, format graphviz.Format) error {
	var src bytes.Buffer
	if err := DOT(&src, f, opts); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := gvRender(ctx, src.Bytes(), format, &out); err != nil {
		return err
	}
	_, err := w.Write(out.Bytes())
	return err
}

func gvRender(ctx context.Context, src []byte, format graphviz.Format, w io.Writer) error {
	gvMu.Lock()
	defer gvMu.Unlock()
	if gv == nil {
		g, err := graphviz.New(context.WithoutCancel(ctx))
		if err != nil {
			return fmt.Errorf("render: start graphviz: %w", err)
		}
		gv = g
	}
	g, err := graphviz.ParseBytes(src)
	if err != nil {
		return fmt.Errorf("render: graphviz rejected the DOT: %w", err)
	}
	defer g.Close()
	if err := gv.Render(ctx, g, format, w); err != nil {
		return fmt.Errorf("render: graphviz %s: %w", format, err)
	}
	return nil
}
