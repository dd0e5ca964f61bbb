// Converts a tar layer to eStargz with stargz-snapshotter's own writer
// (estargz.Build), for the layer tests. Built in GOPATH mode against Debian's
// golang-github-containerd-stargz-snapshotter-dev sources.
//
// usage: estgz IN.tar OUT.stargz CHUNK_SIZE [PRIORITIZED_FILE...]
// prints the TOC digest.
package main

import (
	"io"
	"os"
	"strconv"

	"github.com/containerd/stargz-snapshotter/estargz"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	st, err := f.Stat()
	if err != nil {
		panic(err)
	}
	chunk, err := strconv.Atoi(os.Args[3])
	if err != nil {
		panic(err)
	}
	opts := []estargz.Option{estargz.WithChunkSize(chunk)}
	if len(os.Args) > 4 {
		opts = append(opts, estargz.WithPrioritizedFiles(os.Args[4:]))
	}
	rc, err := estargz.Build(io.NewSectionReader(f, 0, st.Size()), opts...)
	if err != nil {
		panic(err)
	}
	out, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if _, err := io.Copy(out, rc); err != nil {
		panic(err)
	}
	if err := out.Close(); err != nil {
		panic(err)
	}
	if err := rc.Close(); err != nil {
		panic(err)
	}
	os.Stdout.WriteString(rc.TOCDigest().String() + "\n")
}
