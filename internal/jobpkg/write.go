package jobpkg

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// epoch is the modification time of every entry written, so that the same
// files always give the same bytes.
var epoch = time.Unix(0, 0)

// fileHeader is the header of a regular file as this package writes it:
// permissions 0644 or 0755, a fixed time, owner 0:0 and no user names.
func fileHeader(name string, perm fs.FileMode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     int64(perm),
		Size:     size,
		ModTime:  epoch,
	}
}

// WriteFiles writes to w an uncompressed tar of the named files, slash paths
// relative to dir, in the given order. Each is written as a regular file with
// mode 0644, or 0755 if it is executable, a fixed modification time and
// owner 0:0, so the output depends only on the contents. A path that is not
// a regular file, or not a clean relative path, is refused with ErrUnsafe.
// Files are streamed, never read whole into memory.
func WriteFiles(w io.Writer, dir string, paths []string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("writing tar: %w", err)
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	for _, p := range paths {
		if err := writeFile(tw, root, p); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing tar: %w", err)
	}
	return nil
}

// WriteDir writes to w an uncompressed tar of every regular file under dir,
// in lexical walk order with relative slash paths, with the same headers as
// WriteFiles. Directories are not written as entries. A symbolic link or a
// special file anywhere under dir is refused with ErrUnsafe.
func WriteDir(w io.Writer, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("writing tar: %w", err)
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("writing tar: %w", err)
		}
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("file %q: %w", filepath.Join(dir, filepath.FromSlash(p)), notRegular(d.Type()))
		}
		return writeFile(tw, root, p)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing tar: %w", err)
	}
	return nil
}

// writeFile appends the regular file p of root to tw.
func writeFile(tw *tar.Writer, root *os.Root, p string) error {
	name, err := cleanPath(p)
	if err == nil && name == "." {
		err = unsafePath("not a file")
	}
	if err != nil {
		return fmt.Errorf("file %q: %w", p, err)
	}
	fi, err := root.Lstat(name)
	if err != nil {
		return fmt.Errorf("file %q: %w", p, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file %q: %w", p, notRegular(fi.Mode()))
	}
	f, err := root.Open(name)
	if err != nil {
		return fmt.Errorf("file %q: %w", p, unwrapPath(err))
	}
	defer f.Close()
	// Check the file opened, in case p was swapped since the Lstat.
	if fi, err = f.Stat(); err != nil {
		return fmt.Errorf("file %q: %w", p, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file %q: %w", p, notRegular(fi.Mode()))
	}
	if err := tw.WriteHeader(fileHeader(name, permOf(int64(fi.Mode().Perm())), fi.Size())); err != nil {
		return fmt.Errorf("file %q: %w", p, err)
	}
	// Copy exactly the size in the header, even if the file changes meanwhile.
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("the file shrank while being written")
		}
		return fmt.Errorf("file %q: %w", p, err)
	}
	return nil
}

// unwrapPath drops the *fs.PathError around err, whose path repeats the name
// the caller already gives.
func unwrapPath(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}

// notRegular is the error for a file of mode m that is not a regular file.
func notRegular(m fs.FileMode) error {
	what := "a special file"
	switch {
	case m&fs.ModeSymlink != 0:
		what = "a symbolic link"
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (fifo)"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeDevice != 0:
		what = "a device"
	}
	return &reasonError{ErrUnsafe, "refused: " + what + ", not a regular file"}
}

// Open opens a job package for upload. For a directory it returns a reader
// of the tar WriteDir writes, produced by a goroutine that stops when the
// reader is closed, and size -1. For a .tar, .tar.gz, .tgz or .tar.zst file
// it returns the open file and its size.
func Open(path string) (io.ReadCloser, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("job package: %w", err)
	}
	if fi.IsDir() {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(WriteDir(pw, path)) }()
		return pr, -1, nil
	}
	lower := strings.ToLower(path)
	ok := false
	for _, ext := range []string{".tar", ".tar.gz", ".tgz", ".tar.zst"} {
		ok = ok || strings.HasSuffix(lower, ext)
	}
	if !fi.Mode().IsRegular() || !ok {
		return nil, 0, fmt.Errorf("job package %q: not a directory nor a .tar, .tar.gz, .tgz or .tar.zst file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("job package: %w", err)
	}
	return f, fi.Size(), nil
}
