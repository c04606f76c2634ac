package distren

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// packages returns the directories of the module's packages.
func packages(t *testing.T) []string {
	var dirs []string
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != "." {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			if dir := filepath.Dir(p); !slices.Contains(dirs, dir) {
				dirs = append(dirs, dir)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestPackageDocs checks that every package says what it owns.
func TestPackageDocs(t *testing.T) {
	for _, dir := range packages(t) {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		for name, p := range pkgs {
			documented := false
			for _, f := range p.Files {
				documented = documented || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
			}
			if !documented {
				t.Errorf("package %s (%s) has no doc comment", name, dir)
			}
		}
	}
}

// TestLayering keeps transport out of the processing and data layers: the
// operations, session, store, scheduler, vault and manifest know nothing
// of HTTP, and the worker knows its server only as a worker.Server; the
// session, store, scheduler and vault know nothing of the wire format; the
// workers' protocol in process (internal/work) and the federation know no
// transport either.
func TestLayering(t *testing.T) {
	pure := []string{"internal/ops", "internal/session", "internal/store", "internal/manifest", "internal/raster", "internal/jobpkg",
		"internal/vault", "internal/worker", "internal/scheduler"}
	forbidden := []string{"net/http", "github.com/distren/distren/internal/server", "github.com/distren/distren/internal/client",
		"github.com/distren/distren/internal/worker"}
	// Below the stage the wire format is unknown: each layer has its own
	// types, converted at the edge (internal/server). The scheduler decides
	// over state in memory, without the store.
	const wire, st = "github.com/distren/distren/internal/api", "github.com/distren/distren/internal/store"
	also := map[string][]string{"internal/session": {wire}, "internal/store": {wire}, "internal/vault": {wire},
		"internal/storage": {wire}, "internal/scheduler": {wire, st}}
	// The workers' protocol in process and the federation in front of it
	// speak the worker's interface, but no transport: a peer is a
	// federation.Peer, whose HTTP implementation is the client's.
	protocol := []string{"internal/work", "internal/federation"}
	for _, dir := range protocol {
		also[dir] = forbidden[:3]
	}
	for _, dir := range append(append(pure, protocol...), "internal/storage") {
		pkgs, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, parser.ImportsOnly)
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		for _, p := range pkgs {
			for fname, f := range p.Files {
				for _, imp := range f.Imports {
					path, _ := strconv.Unquote(imp.Path.Value)
					if slices.Contains(forbidden, path) && !slices.Contains(protocol, dir) {
						t.Errorf("%s imports %s: this layer must not know the transport", fname, path)
					}
					if slices.Contains(also[dir], path) {
						t.Errorf("%s imports %s: this layer keeps its own types and state, converted at the edge", fname, path)
					}
				}
			}
		}
	}
}
