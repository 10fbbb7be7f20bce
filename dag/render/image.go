package render

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"

	"github.com/goccy/go-graphviz"
)

// go-graphviz runs one WebAssembly instance per process, which is not safe
// for concurrent use; every call into it holds gvTurn, and a call waiting
// for its turn gives up when its context ends. The instance is made on
// first use and kept: making one costs far more than a render.
var (
	gvTurn = make(chan struct{}, 1)
	gv     *graphviz.Graphviz
)

func svgOf(ctx context.Context, w io.Writer, v *view, o Options) error {
	var src bytes.Buffer
	if err := writeDOT(&src, v, o); err != nil {
		return err
	}
	var out bytes.Buffer
	if err := gvRender(ctx, src.Bytes(), graphviz.SVG, &out); err != nil {
		return err
	}
	_, err := w.Write(out.Bytes())
	return err
}

func pngOf(ctx context.Context, w io.Writer, v *view, o Options) error {
	var svg bytes.Buffer
	if err := svgOf(ctx, &svg, v, o); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	img, err := rasterize(ctx, svg.Bytes())
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	return enc.Encode(w, img)
}

// gvRender lays src out and writes it in format. go-graphviz v0.2.10 makes
// its WebAssembly runtime without WithCloseOnContextDone, so a layout, once
// started, runs to its end whatever ctx says: the box and edge limits bound
// its time, and ctx is checked before it starts and after it ends.
func gvRender(ctx context.Context, src []byte, format graphviz.Format, w io.Writer) error {
	select {
	case gvTurn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-gvTurn }()
	if err := ctx.Err(); err != nil {
		return err
	}
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
	return ctx.Err()
}
