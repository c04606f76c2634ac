package cdc

import (
	"errors"
	"fmt"
	"io/fs"
	"sort"
)

// ErrNotRegular reports a directory entry that a package cannot hold: a
// symbolic link, a device, a named pipe or a socket.
var ErrNotRegular = errors.New("not a regular file or directory")

// BuildTree walks fsys and chunks every regular file, in sorted path order,
// calling put with each chunk (put may be called several times with the same
// chunk, which is the caller's to deduplicate; Data is valid only during the
// call). It refuses symbolic links and other irregular files with an error
// naming the path. Pass (*os.Root).FS() rather than os.DirFS to walk a
// directory, so that a file replaced by a symbolic link during the walk cannot
// lead outside it.
func BuildTree(fsys fs.FS, c *Chunker, put func(Chunk) error) (Tree, error) {
	return BuildTreeReusing(fsys, c, put, nil)
}

// Reuse returns the chunks of a file already chunked, if its path and
// stat information show it unchanged since; ok false chunks it again.
type Reuse func(path string, info fs.FileInfo) (chunks []ChunkRef, ok bool)

// BuildTreeReusing is BuildTree, taking the chunks of files reuse knows
// instead of reading them (put is not called for those). Chunks whose sizes
// do not add up to the file's size are ignored.
func BuildTreeReusing(fsys fs.FS, c *Chunker, put func(Chunk) error, reuse Reuse) (Tree, error) {
	var paths []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cdc: %s: %w", p, err)
		}
		switch t := d.Type(); {
		case d.IsDir():
			return nil
		case p == ".":
			return fmt.Errorf("cdc: the root is not a directory: %w", ErrNotRegular)
		case t&fs.ModeSymlink != 0:
			return fmt.Errorf("cdc: %s: is a symbolic link: %w", p, ErrNotRegular)
		case !t.IsRegular():
			return fmt.Errorf("cdc: %s: is a %s: %w", p, typeName(t), ErrNotRegular)
		}
		if err := checkPath(p); err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return Tree{}, err
	}
	// WalkDir visits each directory's entries in order, which is not the
	// order of whole paths ("a/b" comes before "a-b" in a walk, after it
	// bytewise).
	sort.Strings(paths)
	t := Tree{Files: make([]File, 0, len(paths))}
	for _, p := range paths {
		f, err := buildFile(fsys, p, c, put, reuse)
		if err != nil {
			return Tree{}, err
		}
		t.Files = append(t.Files, f)
	}
	if err := t.Validate(); err != nil {
		return Tree{}, err
	}
	return t, nil
}

func buildFile(fsys fs.FS, p string, c *Chunker, put func(Chunk) error, reuse Reuse) (File, error) {
	r, err := fsys.Open(p)
	if err != nil {
		return File{}, fmt.Errorf("cdc: %w", err) // *fs.PathError names p
	}
	defer r.Close()
	info, err := r.Stat()
	if err != nil {
		return File{}, fmt.Errorf("cdc: %w", err)
	}
	if !info.Mode().IsRegular() {
		return File{}, fmt.Errorf("cdc: %s: is a %s: %w", p, typeName(info.Mode().Type()), ErrNotRegular)
	}
	f := File{Path: p, Mode: uint32(info.Mode().Perm())}
	if reuse != nil {
		if chunks, ok := reuse(p, info); ok {
			var size int64
			for _, ch := range chunks {
				size += ch.Size
			}
			if size == info.Size() {
				f.Chunks, f.Size = chunks, size
				return f, nil
			}
		}
	}
	err = c.Split(r, func(ch Chunk) error {
		if err := put(ch); err != nil {
			return err
		}
		f.Chunks = append(f.Chunks, ch.Ref())
		f.Size += int64(ch.Size)
		return nil
	})
	if err != nil {
		return File{}, fmt.Errorf("cdc: %s: %w", p, err)
	}
	return f, nil
}

// typeName names a file type for error messages.
func typeName(t fs.FileMode) string {
	switch {
	case t&fs.ModeSymlink != 0:
		return "symbolic link"
	case t&fs.ModeDir != 0:
		return "directory"
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeCharDevice != 0:
		return "character device"
	case t&fs.ModeDevice != 0:
		return "device"
	}
	return fmt.Sprintf("file of type %v", t)
}
