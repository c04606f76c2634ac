package jobpkg

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
)

// Extract reads a tar stream, compressed with gzip or zstd or not (detected
// by the magic bytes), and writes its regular files and directories under
// dst, which must exist and be empty. Files are created through an os.Root
// so nothing can land outside dst, not even through a symbolic link. Links,
// devices, fifos, unsafe paths and duplicate file paths fail with ErrUnsafe;
// lim is enforced on the bytes actually written. On error what was written
// stays under dst for the caller to remove, and the error names the entry.
// The regular files written are returned sorted by Path.
func Extract(r io.Reader, dst string, lim Limits) ([]File, error) {
	ents, err := os.ReadDir(dst)
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("extract: destination %q is not empty", dst)
	}
	return extract(r, dst, lim)
}

// ExtractOver is Extract into an existing directory that may already hold
// files, all or nothing. The tarball is extracted whole into a temporary
// directory inside dir first; only once all of it was read and passed the
// same safety rules (duplicate paths are refused) are its files moved into
// place, each renamed over the file of the same path, so a reader never sees
// half a file. Before moving, every file is checked to fit: none where dir
// has a directory, no directory of it where dir has a file. On any error
// before the move dir is left as it was; the temporary directory is always
// removed. Other files of dir are left alone.
func ExtractOver(r io.Reader, dir string, lim Limits) ([]File, error) {
	stage, err := os.MkdirTemp(dir, ".jobpkg-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	defer os.RemoveAll(stage)
	files, err := extract(r, stage, lim)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	for _, f := range files {
		if err := fits(root, f.Path); err != nil {
			return nil, err
		}
	}
	staged := filepath.Base(stage)
	for _, f := range files {
		if d := path.Dir(f.Path); d != "." {
			if err := root.MkdirAll(d, 0o755); err != nil {
				return nil, fmt.Errorf("extracting %q: %w", Shorten(f.Path), err)
			}
		}
		if err := root.Rename(staged+"/"+f.Path, f.Path); err != nil {
			var le *os.LinkError
			if errors.As(err, &le) {
				err = le.Err // do not show the temporary name
			}
			return nil, fmt.Errorf("extracting %q: %w", Shorten(f.Path), err)
		}
	}
	return files, nil
}

// fits checks that a file of path p can be moved into root: each directory
// of p is a directory of root or absent, and p is not a directory.
func fits(root *os.Root, p string) error {
	var dirs []string
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, err := root.Stat(dirs[i])
		if errors.Is(err, fs.ErrNotExist) {
			return nil // nor anything under it
		}
		if err != nil {
			return fmt.Errorf("extracting %q: %w", Shorten(p), err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("extracting %q: %w", Shorten(p), unsafeEntry(fmt.Sprintf("%q is a file where the tarball has a directory", dirs[i])))
		}
	}
	if fi, err := root.Lstat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("extracting %q: %w", Shorten(p), unsafeEntry("a directory where the tarball has a file"))
	}
	return nil
}

func extract(r io.Reader, dst string, lim Limits) ([]File, error) {
	root, err := os.OpenRoot(dst)
	if err != nil {
		return nil, fmt.Errorf("extract: %w", err)
	}
	defer root.Close()
	var files []File
	// The paths this stream made files and directories, so that an entry
	// colliding with another is named as such rather than by the file
	// system's error.
	isFile, isDir := map[string]bool{}, map[string]bool{}
	err = walk(r, lim, func(e *entry) error {
		for d := path.Dir(e.name); d != "."; d = path.Dir(d) {
			if isFile[d] {
				return unsafeEntry(fmt.Sprintf("its directory %q is a file of the package", d))
			}
			isDir[d] = true
		}
		if e.dir {
			if isFile[e.name] {
				return unsafeEntry("a directory where the package has a file of the same path")
			}
			isDir[e.name] = true
			return root.MkdirAll(e.name, 0o755)
		}
		if isDir[e.name] {
			return unsafeEntry("a file where the package has a directory of the same path")
		}
		isFile[e.name] = true
		if dir := path.Dir(e.name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
		n, err := createFile(root, e.name, e)
		if err != nil {
			return err
		}
		files = append(files, File{Path: e.name, Mode: e.perm, Size: n})
		return nil
	})
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, err
}

// createFile writes the content of e to a new file name under root; it
// fails if name already exists (O_EXCL also refuses to follow a symlink).
func createFile(root *os.Root, name string, e *entry) (int64, error) {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, e.r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The umask may have removed bits; set exactly what was asked.
		err = root.Chmod(name, e.perm)
	}
	return n, err
}
