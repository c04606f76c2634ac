package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/distren/distren/internal/backend"
	"github.com/distren/distren/internal/manifest"
	"github.com/distren/distren/internal/termsafe"
)

type initOptions struct {
	output
	out   string
	name  string
	chunk int
	force bool
}

func newInitCommand() *cobra.Command {
	var o initOptions
	c := &cobra.Command{
		Use:   "init povray ANIMATION.ini",
		Short: "Write a job manifest for a renderer's scene (povray: from an animation .ini)",
		Long: `Write distrenjob.xml for a scene, next to it, so that the directory is a job package.

  distren init povray scene.ini    frames and clock from the .ini's Initial_Frame, Final_Frame,
                                   Initial_Clock and Final_Clock (or +KFI-style switches), the
                                   scene from its Input_File_Name`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o.output = outputOf(c)
			return runInit(c.Context(), o, args)
		},
	}
	f := c.Flags()
	f.StringVarP(&o.out, "output", "o", "", "manifest to write (default: distrenjob.xml beside the .ini)")
	f.StringVar(&o.name, "name", "", "the job's name (default: the scene's file name)")
	f.IntVar(&o.chunk, "chunk", 4, "frames rendered by one POV-Ray process")
	f.BoolVar(&o.force, "force", false, "overwrite an existing manifest")
	return c
}

// runInit writes the manifest for args: a renderer and its scene file.
func runInit(ctx context.Context, o initOptions, args []string) error {
	if args[0] != "povray" {
		return usageError{fmt.Errorf("init: unknown renderer %q (distren init knows: povray)", args[0])}
	}
	return runInitPOVRay(ctx, o, args[1])
}

func runInitPOVRay(_ context.Context, o initOptions, ini string) error {
	b, err := os.ReadFile(ini)
	if err != nil {
		return err
	}
	a, err := backend.ParsePOVRayIni(bytes.NewReader(b), ini)
	if err != nil {
		return err
	}
	dir := filepath.Dir(ini)
	if a.Scene == "" {
		return fmt.Errorf("%s has no Input_File_Name (or +I switch): distren init needs it to find the scene", ini)
	}
	if _, err := os.Stat(filepath.Join(dir, a.Scene)); err != nil {
		return fmt.Errorf("%s names the scene %s, which is not beside it: %w", ini, a.Scene, err)
	}
	if o.chunk < 1 || o.chunk > manifest.MaxChunk {
		return usageError{fmt.Errorf("--chunk %d: want 1 to %d", o.chunk, manifest.MaxChunk)}
	}
	if o.name == "" {
		o.name = strings.TrimSuffix(filepath.Base(a.Scene), filepath.Ext(a.Scene))
	}
	if o.out == "" {
		o.out = filepath.Join(dir, manifest.FileName)
	}
	esc := func(s string) string {
		var w strings.Builder
		xml.EscapeText(&w, []byte(s))
		return w.String()
	}
	iniRel := filepath.ToSlash(filepath.Base(ini))
	doc := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by distren init povray from %s: frame n of the job is frame n of
     its animation (frames %d to %d, clock %g to %g). -->
<distrenjob version="1">
  <name>%s</name>
  <chunk>%d</chunk>
  <backend name="povray" version="3.7">
    <scene>%s</scene>
    <ini>%s</ini>
  </backend>
  <inputs>
    <file>%s</file>
    <file>%s</file>
  </inputs>
  <frames>
    <range first="%d" last="%d"/>
  </frames>
  <outputs>
    <output>*.png</output>
  </outputs>
</distrenjob>
`, esc(iniRel), a.InitialFrame, a.FinalFrame, a.InitialClock, a.FinalClock, esc(o.name), o.chunk,
		esc(a.Scene), esc(iniRel), esc(a.Scene), esc(iniRel), a.InitialFrame, a.FinalFrame)
	// What we write must be a valid job.
	m, err := manifest.Parse(strings.NewReader(doc), o.out, manifest.Options{})
	if err == nil {
		err = backend.Default().CheckManifest(m)
	}
	if err != nil {
		return fmt.Errorf("the manifest for %s would not be valid: %w", ini, err)
	}
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.force {
		flag = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(o.out, flag, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return usageError{fmt.Errorf("%s exists (--force overwrites it)", o.out)}
	} else if err != nil {
		return err
	}
	if _, err := f.WriteString(doc); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(o.stdout, "wrote %s: %d frames (%d-%d) of %s, %d per POV-Ray process\n",
		o.out, len(m.Frames), a.InitialFrame, a.FinalFrame, termsafe.Line(a.Scene), o.chunk)
	return nil
}
