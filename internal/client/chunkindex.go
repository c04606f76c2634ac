package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/distren/distren/internal/cdc"
)

// ChunkIndex remembers, per package directory, the chunks of each file
// submitted before with the stat information it had then, so that
// re-submitting a large scene reads only the files that changed
// (DirOptions.Index). A file whose size, modification time, change time or
// inode differ is chunked again. It lives in the user's cache directory;
// losing it costs one full read of the package.
type ChunkIndex struct {
	path  string
	Files map[string]indexedFile `json:"files"`
}

type indexedFile struct {
	Size   int64          `json:"size"`
	MTime  int64          `json:"mtime"`
	CTime  int64          `json:"ctime"`
	Inode  uint64         `json:"inode"`
	Chunks []indexedChunk `json:"chunks"`
}

type indexedChunk struct {
	Hash string `json:"h"`
	Size int64  `json:"s"`
}

const indexVersion = "1"

// OpenChunkIndex loads the index of directory dir from the user's cache
// directory, or starts an empty one (also when there is no cache directory:
// then it records nothing).
func OpenChunkIndex(dir string) *ChunkIndex {
	idx := &ChunkIndex{Files: map[string]indexedFile{}}
	abs, err := filepath.Abs(dir)
	base, cerr := os.UserCacheDir()
	if err != nil || cerr != nil {
		return idx
	}
	sum := sha256.Sum256([]byte(indexVersion + "\x00" + abs))
	idx.path = filepath.Join(base, "distren", "submit", hex.EncodeToString(sum[:12])+".json")
	if b, err := os.ReadFile(idx.path); err == nil {
		var loaded ChunkIndex
		if json.Unmarshal(b, &loaded) == nil && loaded.Files != nil {
			idx.Files = loaded.Files
		}
	}
	return idx
}

func statOf(info fs.FileInfo) indexedFile {
	f := indexedFile{Size: info.Size(), MTime: info.ModTime().UnixNano()}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		f.CTime = st.Ctim.Nano()
		f.Inode = st.Ino
	}
	return f
}

// reuse is a cdc.Reuse answering from the index.
func (idx *ChunkIndex) reuse(path string, info fs.FileInfo) ([]cdc.ChunkRef, bool) {
	old, ok := idx.Files[path]
	now := statOf(info)
	if !ok || old.Size != now.Size || old.MTime != now.MTime || old.CTime != now.CTime || old.Inode != now.Inode {
		return nil, false
	}
	refs := make([]cdc.ChunkRef, len(old.Chunks))
	for i, c := range old.Chunks {
		b, err := hex.DecodeString(c.Hash)
		if err != nil || len(b) != 32 {
			return nil, false
		}
		copy(refs[i].Hash[:], b)
		refs[i].Size = c.Size
	}
	return refs, true
}

// save records the tree's files with the stat information each had when
// it was opened to be chunked (infos), atomically. A file that changed
// while it was read is thus chunked again next time, whatever its stat
// information says then.
func (idx *ChunkIndex) save(infos map[string]fs.FileInfo, t cdc.Tree) {
	if idx.path == "" {
		return
	}
	files := make(map[string]indexedFile, len(t.Files))
	for _, f := range t.Files {
		info, ok := infos[f.Path]
		if !ok || info.Size() != f.Size {
			continue
		}
		e := statOf(info)
		for _, c := range f.Chunks {
			e.Chunks = append(e.Chunks, indexedChunk{hex.EncodeToString(c.Hash[:]), c.Size})
		}
		files[f.Path] = e
	}
	b, err := json.Marshal(ChunkIndex{Files: files})
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(idx.path), 0o700); err != nil {
		return
	}
	tmp := idx.path + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, idx.path)
	}
}
