package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/distren/distren/internal/api"
	"github.com/distren/distren/internal/cdc"
)

// catalogLimits are the test server's limits, small so that the catalog's
// cases about limits need no large input. A case's "limit:" must name one.
var catalogLimits = map[string]string{
	"--max-package-bytes":  "4000000",
	"--max-package-files":  "1000",
	"--max-frames":         "20000",
	"--max-manifest-bytes": "1048576",
}

// TestCatalog runs every case of testdata/catalog (described in its
// README.md) against one real server: each is refused with the status, exit
// code and message the case names. After each case the server still answers,
// holds no job, has no upload left in its tmp directory, and (for tarballs)
// stored nothing in its vault. At the end a valid job still renders.
func TestCatalog(t *testing.T) {
	cases := loadCatalog(t, "testdata/catalog")
	if len(cases) < 25 {
		t.Fatalf("the catalog holds %d cases, want at least 25", len(cases))
	}
	data := t.TempDir()
	args := []string{"--data", data, "--name", "catalog", "--workers", "1"}
	for _, f := range slices.Sorted(maps.Keys(catalogLimits)) {
		args = append(args, f, catalogLimits[f])
	}
	srv, base := serve(t, args...)
	env := &catalogEnv{base: base, data: data, hc: &http.Client{Timeout: time.Minute}}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.run(t, env)
			env.checkIntact(t)
		})
	}

	if m := regexp.MustCompile(`(?m)^.*level=ERROR.*$`).FindAllString(srv.log.String(), 5); len(m) > 0 {
		t.Errorf("the server logged errors (a refusal is never the server's failure):\n%s", strings.Join(m, "\n"))
	}
	pkg := writeJob(t, `<distrenjob version="1"><name>after-the-catalog</name>
  <backend name="builtin"><width>16</width><height>16</height></backend>
  <frames><range first="1" last="3"/></frames>
  <outputs><output>*.png</output></outputs>
</distrenjob>`, nil)
	jobURL := strings.TrimSpace(run(t, 0, "submit", pkg, "--server", base, "--wait", "-q"))
	job, frames := status(t, base, jobURL)
	if job.State != api.JobDone || len(frames) != 3 {
		t.Errorf("the job after the catalog: %+v, %d frames; want done, 3", job, len(frames))
	}
	if jobs := env.jobs(t); len(jobs) != 1 {
		t.Errorf("%d jobs after the catalog and one valid job, want 1", len(jobs))
	}
	env.checkTmpEmpty(t)
}

// TestCatalogDocumented checks that docs/limits.md lists every case of the
// catalog, and no other, with how it is sent and the answer it gets.
func TestCatalogDocumented(t *testing.T) {
	cases := loadCatalog(t, "testdata/catalog")
	doc, err := os.ReadFile("../docs/limits.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, l := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cells := strings.Split(strings.ReplaceAll(l, `\|`, "\x00"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) == 8 { // "", case, sent as, status, exit, error, what, ""
			rows[strings.Trim(cells[1], "`")] = cells[2:5]
		}
	}
	dash := func(n int) string {
		if n == 0 {
			return "—"
		}
		return strconv.Itoa(n)
	}
	for _, c := range cases {
		want := []string{c.send, dash(c.status), dash(c.exit)}
		if got, ok := rows[c.name]; !ok {
			t.Errorf("docs/limits.md does not list the case %s", c.name)
		} else if !slices.Equal(got, want) {
			t.Errorf("docs/limits.md lists %s as sent as / status / exit %v; the case says %v", c.name, got, want)
		}
		delete(rows, c.name)
	}
	for name := range rows {
		t.Errorf("docs/limits.md lists a case %s that the catalog does not have", name)
	}
}

// catalogCase is one case of the catalog.
type catalogCase struct {
	name    string
	about   string   // the comment lines, joined
	keys    []string // header keys in order, for checking
	send    string
	status  int
	exit    int
	hasExit bool
	errs    []string
	absent  []string
	limit   string
	gen     []string // generator name and arguments
	compr   string
	trunc   int
	request string
	ctype   string
	args    []string

	entries  []catalogEntry
	body     []byte
	bodyFunc func(w io.Writer) error // a generated body, streamed
	tree     func(t *testing.T, tr *cdc.Tree)
	rawTree  []byte // a hand-encoded tree
	noUpload bool
	window   int // the zstd window to compress with; 0 for the default
}

// catalogEntry is one file or other entry of a package.
type catalogEntry struct {
	kind string // "reg", "dir", "symlink", "hardlink", "fifo", "chardev", "blockdev"
	path string
	link string
	data []byte
	// size and zeros describe a generated file of zero bytes, streamed;
	// lie is the size its tar header claims instead.
	zeros int64
	lie   int64
}

var catalogSends = []string{"package", "tar", "dir", "tree", "http", "raw", "cli"}

// loadCatalog parses every case of dir.
func loadCatalog(t *testing.T, dir string) []*catalogCase {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []*catalogCase
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCatalogCase(strings.TrimSuffix(filepath.Base(n), ".txt"), b)
		if err != nil {
			t.Errorf("%s: %v", n, err)
			continue
		}
		out = append(out, c)
	}
	return out
}

var sectionLine = regexp.MustCompile(`^-- (.+) --$`)

func parseCatalogCase(name string, b []byte) (*catalogCase, error) {
	c := &catalogCase{name: name}
	lines := strings.SplitAfter(string(b), "\n")
	i := 0
	for ; i < len(lines) && !sectionLine.MatchString(strings.TrimRight(lines[i], "\n")); i++ {
		l := strings.TrimSpace(lines[i])
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "#") {
			c.about = strings.TrimSpace(c.about + " " + strings.TrimSpace(strings.TrimPrefix(l, "#")))
			continue
		}
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			return nil, fmt.Errorf("header line %q is not key: value", l)
		}
		v = strings.TrimSpace(v)
		c.keys = append(c.keys, k)
		var err error
		switch k {
		case "send":
			c.send = v
		case "status":
			c.status, err = strconv.Atoi(v)
		case "exit":
			c.exit, err = strconv.Atoi(v)
			c.hasExit = true
		case "error":
			c.errs = append(c.errs, v)
		case "absent":
			c.absent = append(c.absent, v)
		case "limit":
			c.limit = v
		case "generate":
			c.gen = strings.Fields(v)
		case "compress":
			c.compr = v
		case "truncate":
			c.trunc, err = strconv.Atoi(v)
		case "request":
			c.request = v
		case "content-type":
			c.ctype = v
		case "args":
			c.args = strings.Fields(v)
		default:
			return nil, fmt.Errorf("unknown header key %q", k)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", k, err)
		}
	}
	for i < len(lines) {
		header := sectionLine.FindStringSubmatch(strings.TrimRight(lines[i], "\n"))[1]
		var content strings.Builder
		for i++; i < len(lines) && !sectionLine.MatchString(strings.TrimRight(lines[i], "\n")); i++ {
			content.WriteString(lines[i])
		}
		if err := c.addSection(header, []byte(content.String())); err != nil {
			return nil, err
		}
	}
	return c, c.check()
}

func (c *catalogCase) addSection(header string, content []byte) error {
	if header == "body" {
		c.body = content
		return nil
	}
	if header == "request" {
		c.body = bytes.ReplaceAll(content, []byte("\n"), []byte("\r\n"))
		return nil
	}
	e := catalogEntry{kind: "reg", path: header, data: content}
	if kind, rest, ok := strings.Cut(header, " "); ok && slices.Contains([]string{"dir", "symlink", "hardlink", "fifo", "chardev", "blockdev"}, kind) {
		e = catalogEntry{kind: kind, path: rest}
		if kind == "symlink" || kind == "hardlink" {
			p, link, ok := strings.Cut(rest, " -> ")
			if !ok {
				return fmt.Errorf("section %q: a link needs PATH -> TARGET", header)
			}
			e.path, e.link = p, link
		}
	}
	c.entries = append(c.entries, e)
	return nil
}

// check refuses a case the test could not run faithfully.
func (c *catalogCase) check() error {
	if !slices.Contains(catalogSends, c.send) {
		return fmt.Errorf("send %q: want one of %s", c.send, strings.Join(catalogSends, ", "))
	}
	if c.about == "" {
		return fmt.Errorf("no # comment saying what the case is")
	}
	if len(c.errs) == 0 {
		return fmt.Errorf("no error: line: every case names what its error must say")
	}
	needStatus := slices.Contains([]string{"package", "tar", "tree", "http", "raw"}, c.send)
	needExit := slices.Contains([]string{"package", "tar", "dir", "cli"}, c.send)
	switch {
	case needStatus && (c.status < 400 || c.status > 499):
		return fmt.Errorf("send %s needs status: 4xx (a refusal is the client's fault), not %d", c.send, c.status)
	case !needStatus && c.status != 0:
		return fmt.Errorf("send %s gets no HTTP status to check; remove status:", c.send)
	case needExit && (!c.hasExit || c.exit == 0):
		return fmt.Errorf("send %s needs a non-zero exit:", c.send)
	case !needExit && c.hasExit:
		return fmt.Errorf("send %s runs no command; remove exit:", c.send)
	case c.limit != "" && catalogLimits[c.limit] == "":
		return fmt.Errorf("limit %q is not a limit the test server sets (%v)", c.limit, slices.Sorted(maps.Keys(catalogLimits)))
	case (c.request == "") != (c.send != "http"):
		return fmt.Errorf("request: goes with send: http, and only with it")
	case (len(c.args) == 0) != (c.send != "cli"):
		return fmt.Errorf("args: goes with send: cli, and only with it")
	case c.compr != "" && c.compr != "gzip" && c.compr != "zstd":
		return fmt.Errorf("compress %q: want gzip or zstd", c.compr)
	case (c.compr != "" || c.trunc != 0) && c.send != "tar":
		return fmt.Errorf("compress: and truncate: go with send: tar")
	case c.send == "raw" && c.body == nil:
		return fmt.Errorf("send raw needs a request section")
	}
	if len(c.gen) > 0 {
		return c.generate()
	}
	return nil
}

// generate builds the generated part of a case from its description.
func (c *catalogCase) generate() error {
	name, args := c.gen[0], c.gen[1:]
	wantArgs := map[string]int{"nested-xml": 1, "cycle-frames": 1, "huge-manifest": 1, "many-files": 1, "zero-file": 2,
		"size-lie": 2, "gzip-zeros": 1, "json-string": 2, "missing-batch": 1, "tree-repeat-chunk": 1, "tree-lie-size": 0,
		"tree-no-upload": 0, "tree-path": 1, "zstd-window": 1}
	n, known := wantArgs[name]
	if !known {
		return fmt.Errorf("generate %q: no such generator", name)
	}
	if len(args) != n {
		return fmt.Errorf("generate %s: %d arguments, want %d", name, len(args), n)
	}
	// v is the last argument, a number for every generator but tree-path.
	var v int64
	if n > 0 && name != "tree-path" {
		var err error
		if v, err = strconv.ParseInt(args[n-1], 10, 64); err != nil || v < 0 {
			return fmt.Errorf("generate %s: %q is not a number", name, args[n-1])
		}
	}
	manifest := func(backend, frames string) catalogEntry {
		return catalogEntry{kind: "reg", path: "distrenjob.xml", data: fmt.Appendf(nil,
			"<distrenjob version=\"1\">\n  <name>catalog</name>\n  %s\n  <frames>\n%s  </frames>\n  <outputs><output>*.png</output></outputs>\n</distrenjob>\n",
			backend, frames)}
	}
	switch name {
	case "nested-xml":
		c.entries = append(c.entries, manifest(`<backend name="builtin">`+strings.Repeat("<x>", int(v))+strings.Repeat("</x>", int(v))+`</backend>`,
			"    <frame id=\"1\"/>\n"))
	case "cycle-frames":
		var b strings.Builder
		for i := int64(1); i <= v; i++ {
			fmt.Fprintf(&b, "    <frame id=\"%d\"><depends on=\"%d\"/></frame>\n", i, i%v+1)
		}
		c.entries = append(c.entries, manifest(`<backend name="builtin"/>`, b.String()))
	case "huge-manifest":
		e := manifest(`<backend name="builtin"/>`, "    <frame id=\"1\"/>\n")
		pad := int(v) - len(e.data) - len("<!--  -->\n")
		e.data = append(e.data, "<!-- "+strings.Repeat("x", max(pad, 0))+" -->\n"...)
		c.entries = append(c.entries, e)
	case "many-files":
		for i := int64(1); i <= v; i++ {
			c.entries = append(c.entries, catalogEntry{kind: "reg", path: fmt.Sprintf("f/%05d", i)})
		}
	case "zero-file", "size-lie":
		e := catalogEntry{kind: "reg", path: args[0], zeros: v}
		if name == "size-lie" {
			e.zeros, e.lie = 10, v
		}
		c.entries = append(c.entries, e)
	case "gzip-zeros":
		c.bodyFunc = func(w io.Writer) error {
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			if err := writeZeros(zw, v); err != nil {
				return err
			}
			return zw.Close()
		}
	case "json-string":
		c.body = fmt.Appendf(nil, `{%q:"%s"}`, args[0], strings.Repeat("a", int(v)))
	case "missing-batch":
		var req api.MissingRequest
		for i := range v {
			req.Chunks = append(req.Chunks, fmt.Sprintf("%064x", i+1))
		}
		c.body, _ = json.Marshal(req)
	case "tree-repeat-chunk":
		c.tree = func(t *testing.T, tr *cdc.Tree) {
			f := &tr.Files[0]
			if len(f.Chunks) != 1 {
				t.Fatalf("tree-repeat-chunk: %s has %d chunks, want 1", f.Path, len(f.Chunks))
			}
			for range v {
				f.Chunks = append(f.Chunks, f.Chunks[0])
			}
			f.Size *= v + 1
		}
	case "tree-lie-size":
		c.tree = func(t *testing.T, tr *cdc.Tree) {
			for i := range tr.Files {
				if f := &tr.Files[i]; f.Path == "distrenjob.xml" && len(f.Chunks) == 1 {
					f.Chunks[0].Size++
					f.Size++
					return
				}
			}
			t.Fatal("tree-lie-size: no distrenjob.xml of one chunk")
		}
	case "tree-no-upload":
		c.noUpload = true
	case "zstd-window":
		if c.compr != "zstd" {
			return fmt.Errorf("generate zstd-window goes with compress: zstd")
		}
		c.window = int(v) << 20
	case "tree-path":
		// The encoding of internal/cdc: magic, version, file count; per
		// file: path length, path, mode, size, chunk count.
		b := []byte("DTRE")
		b = binary.BigEndian.AppendUint16(b, cdc.TreeVersion)
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint16(b, uint16(len(args[0])))
		b = append(b, args[0]...)
		b = binary.BigEndian.AppendUint32(b, 0o644)
		b = binary.BigEndian.AppendUint64(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		c.rawTree = b
	}
	if strings.HasPrefix(name, "tree-") && c.send != "tree" {
		return fmt.Errorf("generate %s goes with send: tree", name)
	}
	return nil
}

// catalogZeros is what writeZeros writes from.
var catalogZeros = make([]byte, 1<<20)

// writeZeros writes n zero bytes to w.
func writeZeros(w io.Writer, n int64) error {
	zeros := catalogZeros
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if _, err := w.Write(zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// catalogEnv is the server the cases run against.
type catalogEnv struct {
	base string
	data string
	hc   *http.Client
}

func (c *catalogCase) run(t *testing.T, env *catalogEnv) {
	t.Logf("%s (send %s)", c.about, c.send)
	switch c.send {
	case "package":
		env.postTarball(t, c, c.tarball(t))
		c.checkCLI(t, "submit", c.writeDir(t), "--server", env.base, "-q")
	case "tar":
		tb := c.tarball(t)
		env.postTarball(t, c, tb)
		file := filepath.Join(t.TempDir(), "package"+map[string]string{"": ".tar", "gzip": ".tar.gz", "zstd": ".tar.zst"}[c.compr])
		if err := os.WriteFile(file, tb, 0o644); err != nil {
			t.Fatal(err)
		}
		c.checkCLI(t, "submit", file, "--server", env.base, "-q")
	case "dir":
		c.checkCLI(t, "submit", c.writeDir(t), "--server", env.base, "-q")
	case "tree":
		env.postTree(t, c)
	case "http":
		method, path, _ := strings.Cut(c.request, " ")
		var body io.Reader
		length := int64(-1)
		switch {
		case c.bodyFunc != nil:
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(c.bodyFunc(pw)) }()
			defer pr.Close()
			body = pr
		case c.body != nil:
			body, length = bytes.NewReader(c.body), int64(len(c.body))
		}
		code, msg := env.do(t, method, path, c.ctype, body, length)
		c.checkAnswer(t, code, msg)
	case "raw":
		code, msg := env.raw(t, c.body)
		c.checkAnswer(t, code, msg)
	case "cli":
		args := make([]string, len(c.args))
		for i, a := range c.args {
			args[i] = strings.ReplaceAll(a, "{server}", env.base)
		}
		c.checkCLI(t, args...)
	default:
		t.Fatalf("send %q: the test does not know how to run it", c.send)
	}
}

// checkAnswer checks an HTTP answer against the case.
func (c *catalogCase) checkAnswer(t *testing.T, code int, msg string) {
	t.Helper()
	if code != c.status {
		t.Errorf("status %d, want %d; error: %s", code, c.status, msg)
	}
	c.checkMessage(t, "HTTP error", msg)
}

func (c *catalogCase) checkMessage(t *testing.T, what, msg string) {
	t.Helper()
	for _, e := range c.errs {
		if !strings.Contains(msg, e) {
			t.Errorf("%s %q\ndoes not contain %q", what, msg, e)
		}
	}
	for _, a := range c.absent {
		if strings.Contains(msg, a) {
			t.Errorf("%s %q\ncontains %q", what, msg, a)
		}
	}
}

// checkCLI runs distren, expecting the case's exit code and error.
func (c *catalogCase) checkCLI(t *testing.T, args ...string) {
	t.Helper()
	stderr := runStderr(t, c.exit, args...)
	c.checkMessage(t, "stderr of distren "+args[0], stderr)
}

// tarball builds the case's entries as a tar stream, compressed and cut as
// the case says. A body section stands for the whole tarball.
func (c *catalogCase) tarball(t *testing.T) []byte {
	t.Helper()
	if c.body != nil {
		return c.body
	}
	var buf bytes.Buffer
	var w io.Writer = &buf
	var closeZ func() error
	flush := func() error { return nil }
	switch c.compr {
	case "gzip":
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // fast, and 800:1 on zeros
		w, closeZ = zw, zw.Close
	case "zstd":
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedBestCompression)}
		if c.window > 0 {
			opts = append(opts, zstd.WithWindowSize(c.window))
		}
		zw, err := zstd.NewWriter(&buf, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// A flush after each entry keeps the content size out of the frame
		// header, so that its window is the one asked for.
		w, closeZ, flush = zw, zw.Close, zw.Flush
	}
	tw := tar.NewWriter(w)
	lied := false
	for _, e := range c.entries {
		hdr := &tar.Header{Name: e.path, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		switch e.kind {
		case "reg":
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))+e.zeros
			if e.lie > 0 {
				hdr.Size = e.lie
			}
		case "dir":
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		case "symlink":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		case "hardlink":
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, e.link
		case "fifo":
			hdr.Typeflag = tar.TypeFifo
		case "chardev":
			hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, 1, 5
		case "blockdev":
			hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeBlock, 8, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
		if err := writeZeros(tw, e.zeros); err != nil {
			t.Fatal(err)
		}
		if err := tw.Flush(); err == nil {
			if err := flush(); err != nil {
				t.Fatal(err)
			}
		}
		if e.lie > 0 {
			lied = true // the entry is short of what it claims: the tar ends here
			break
		}
	}
	if lied {
		tw.Flush() // refuses, as the entry is short; the bytes written stay
	} else if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if closeZ != nil {
		if err := closeZ(); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	if c.trunc > 0 {
		if c.trunc >= len(b) {
			t.Fatalf("truncate: %d, but the tarball has only %d bytes", c.trunc, len(b))
		}
		b = b[:c.trunc]
	}
	return b
}

// writeDir writes the case's entries into a new directory.
func (c *catalogCase) writeDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, e := range c.entries {
		p := filepath.Join(dir, filepath.FromSlash(e.path))
		if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
			t.Fatalf("entry %q leaves the directory: send it as a tar", e.path)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch e.kind {
		case "reg":
			var f *os.File
			if f, err = os.Create(p); err == nil {
				if _, err = f.Write(e.data); err == nil {
					err = writeZeros(f, e.zeros)
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		case "dir":
			err = os.Mkdir(p, 0o755)
		case "symlink":
			err = os.Symlink(e.link, p)
		case "fifo":
			err = syscall.Mkfifo(p, 0o644)
		default:
			t.Fatalf("entry %q: a %s cannot be made in a directory here: send it as a tar", e.path, e.kind)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// postTarball posts a tarball as the body of POST /v1/jobs, checking the
// answer and that the vault stored nothing of it.
func (env *catalogEnv) postTarball(t *testing.T, c *catalogCase, tb []byte) {
	t.Helper()
	before := env.vaultSize(t)
	code, msg := env.do(t, "POST", "/v1/jobs", "application/x-tar", bytes.NewReader(tb), int64(len(tb)))
	c.checkAnswer(t, code, msg)
	if after := env.vaultSize(t); after != before {
		t.Errorf("the vault went from %d to %d bytes for a refused tarball: its files were stored", before, after)
	}
}

// postTree uploads the chunks of the case's files and posts their tree.
func (env *catalogEnv) postTree(t *testing.T, c *catalogCase) {
	t.Helper()
	enc := c.rawTree
	if enc == nil {
		ch, err := cdc.New(cdc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var tr cdc.Tree
		for _, e := range c.entries {
			if e.kind != "reg" || e.zeros != 0 {
				t.Fatalf("entry %q: a tree holds regular files given in full", e.path)
			}
			f := cdc.File{Path: e.path, Mode: 0o644}
			err := ch.Split(bytes.NewReader(e.data), func(k cdc.Chunk) error {
				if !c.noUpload {
					h := hex.EncodeToString(k.Hash[:])
					if code, msg := env.do(t, "PUT", "/v1/chunks/"+h, "", bytes.NewReader(k.Data), int64(k.Size)); code != http.StatusOK {
						return fmt.Errorf("PUT chunk %s: %d %s", h, code, msg)
					}
				}
				f.Chunks = append(f.Chunks, k.Ref())
				f.Size += int64(k.Size)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			tr.Files = append(tr.Files, f)
		}
		slices.SortFunc(tr.Files, func(a, b cdc.File) int { return strings.Compare(a.Path, b.Path) })
		if c.tree != nil {
			c.tree(t, &tr)
		}
		if enc, err = tr.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	code, msg := env.do(t, "POST", "/v1/jobs", api.TreeContentType, bytes.NewReader(enc), int64(len(enc)))
	c.checkAnswer(t, code, msg)
}

// do sends one request and returns the status and, for an error, its
// message; an error answer must be JSON.
func (env *catalogEnv) do(t *testing.T, method, path, ctype string, body io.Reader, length int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, env.base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = length
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := env.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, answerMessage(t, resp)
}

// raw writes a request as is and reads the answer.
func (env *catalogEnv) raw(t *testing.T, request []byte) (int, string) {
	t.Helper()
	u, err := url.Parse(env.base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v (did the server wait for a body it should have refused?)", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, answerMessage(t, resp)
}

func answerMessage(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if resp.StatusCode/100 == 2 {
		return ""
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error answer of type %q, want application/json: %s", ct, b)
	}
	var e api.Error
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Errorf("error answer is not {\"error\": \"...\"}: %s", b)
	}
	return e.Error
}

// jobs returns the server's jobs.
func (env *catalogEnv) jobs(t *testing.T) []api.Job {
	t.Helper()
	resp, err := env.hc.Get(env.base + "/v1/jobs")
	if err != nil {
		t.Fatalf("GET /v1/jobs: %v", err)
	}
	defer resp.Body.Close()
	var jobs []api.Job
	if err := json.NewDecoder(resp.Body).Decode(&jobs); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/jobs: %d %v", resp.StatusCode, err)
	}
	return jobs
}

// checkIntact checks, after a case, that the server still serves, that no
// job was created, and that no upload is left in its tmp directory.
func (env *catalogEnv) checkIntact(t *testing.T) {
	t.Helper()
	resp, err := env.hc.Get(env.base + "/v1/server")
	if err != nil {
		t.Fatalf("the server no longer answers: %v", err)
	}
	var s api.Server
	err = json.NewDecoder(resp.Body).Decode(&s)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || s.Name != "catalog" {
		t.Fatalf("GET /v1/server: %d %+v %v", resp.StatusCode, s, err)
	}
	if jobs := env.jobs(t); len(jobs) != 0 {
		t.Errorf("a refused case created a job: %+v", jobs[0])
	}
	env.checkTmpEmpty(t)
}

func (env *catalogEnv) checkTmpEmpty(t *testing.T) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(env.data, "tmp"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("left in the data directory's tmp/: %s", e.Name())
	}
}

// vaultSize returns the bytes stored under the vault's directory.
func (env *catalogEnv) vaultSize(t *testing.T) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(env.data, "vault"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
