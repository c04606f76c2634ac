// Command xorfilter is a filter program for the tests of the command
// filter: it speaks the Command protocol, answering every frame with its
// bytes XORed with a key (so it encodes and decodes alike).
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	key := flag.String("key", "distren", "XOR key")
	starts := flag.String("starts", "", "append a line to this file at every start")
	dieAfter := flag.Int("die-after", 0, "exit with an error instead of answering the frame after this many")
	flag.Parse()
	if *starts != "" {
		f, err := os.OpenFile(*starts, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			fail(err)
		}
		fmt.Fprintln(f, os.Getpid())
		f.Close()
	}
	r := bufio.NewReaderSize(os.Stdin, 1<<20)
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	k := []byte(*key)
	for n := 0; ; n++ {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			fail(err)
		}
		if *dieAfter > 0 && n == *dieAfter {
			fail(fmt.Errorf("told to die after %d frames", n))
		}
		b := make([]byte, binary.BigEndian.Uint64(hdr[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			fail(err)
		}
		for i := range b {
			b[i] ^= k[i%len(k)]
		}
		w.Write(hdr[:])
		w.Write(b)
		if r.Buffered() == 0 { // answer before waiting for more
			if err := w.Flush(); err != nil {
				fail(err)
			}
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "xorfilter:", err)
	os.Exit(3)
}
