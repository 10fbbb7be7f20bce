package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/trellisflow/trellis/dag"
)

// WriteFiles writes f as name.dot, name.mmd, name.svg and name.png in dir,
// making dir if needed, and returns the paths it wrote and what the
// pictures draw (one layout for the four). Each file is written to a
// temporary file and renamed, so a viewer never reads half a picture.
func WriteFiles(ctx context.Context, dir, name string, f *dag.Flow, opts *Options) ([]string, Info, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, Info{}, fmt.Errorf("render: file name %q must be a plain name", name)
	}
	p, err := Prepare(ctx, f, opts)
	if err != nil {
		return nil, Info{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, Info{}, fmt.Errorf("render: %w", err)
	}
	formats := []struct {
		ext  string
		draw func(*bytes.Buffer) error
	}{
		{".dot", func(b *bytes.Buffer) error { return p.DOT(b) }},
		{".mmd", func(b *bytes.Buffer) error { return p.Mermaid(b) }},
		{".svg", func(b *bytes.Buffer) error { return p.SVG(ctx, b) }},
		{".png", func(b *bytes.Buffer) error { return p.PNG(ctx, b) }},
	}
	var paths []string
	for _, fm := range formats {
		var buf bytes.Buffer
		if err := fm.draw(&buf); err != nil {
			return paths, p.Info(), err
		}
		path := filepath.Join(dir, name+fm.ext)
		if err := writeAtomic(path, buf.Bytes()); err != nil {
			return paths, p.Info(), err
		}
		paths = append(paths, path)
	}
	return paths, p.Info(), nil
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("render: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("render: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("render: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	return nil
}
