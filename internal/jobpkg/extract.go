package jobpkg

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
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
	return extract(r, dst, lim, false)
}

// ExtractOver is Extract into an existing directory that may already hold
// files. A regular file of the tarball replaces the file of the same path:
// it is written to a temporary name in the same directory, then renamed over
// it, so a reader never sees half a file. Other files are left alone.
// Duplicate paths within the stream are still refused, and the same safety
// rules apply.
func ExtractOver(r io.Reader, dir string, lim Limits) ([]File, error) {
	return extract(r, dir, lim, true)
}

func extract(r io.Reader, dst string, lim Limits, over bool) ([]File, error) {
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
		var (
			n   int64
			err error
		)
		if over {
			n, err = replaceFile(root, e)
		} else {
			n, err = createFile(root, e.name, e)
		}
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

// replaceFile writes the content of e next to its final path under a
// temporary name and renames it into place.
func replaceFile(root *os.Root, e *entry) (int64, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(path.Dir(e.name), ".jobpkg-"+hex.EncodeToString(rnd[:])+".tmp")
	n, err := createFile(root, tmp, e)
	if err == nil {
		err = root.Rename(tmp, e.name)
		if err != nil {
			var le *os.LinkError
			if errors.As(err, &le) {
				err = le.Err // do not show the temporary name
			}
			err = fmt.Errorf("replacing %q: %w", e.name, err)
		}
	}
	if err != nil {
		root.Remove(tmp)
		return 0, err
	}
	return n, nil
}
