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
// making dir if needed, and returns the paths it wrote. Each file is written
// to a temporary file and renamed, so a viewer never reads half a picture.
func WriteFiles(ctx context.Context, dir, name string, f *dag.Flow, opts *Options) ([]string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return nil, fmt.Errorf("render: file name %q must be a plain name", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	formats := []struct {
		ext  string
		draw func(*bytes.Buffer) error
	}{
		{".dot", func(b *bytes.Buffer) error { return DOT(b, f, opts) }},
		{".mmd", func(b *bytes.Buffer) error { return Mermaid(b, f, opts) }},
		{".svg", func(b *bytes.Buffer) error { return SVG(ctx, b, f, opts) }},
		{".png", func(b *bytes.Buffer) error { return PNG(ctx, b, f, opts) }},
	}
	var paths []string
	for _, fm := range formats {
		var buf bytes.Buffer
		if err := fm.draw(&buf); err != nil {
			return paths, err
		}
		path := filepath.Join(dir, name+fm.ext)
		if err := writeAtomic(path, buf.Bytes()); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	return paths, nil
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
