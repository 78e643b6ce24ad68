// Command image writes Lode's container image as a tarball for
// `docker load`: `make image` runs it on a static build of lode. It needs
// no container engine and no registry.
package main

import (
	"flag"
	"fmt"
	"os"

	"lode.dev/lode/internal/image"
)

func main() {
	binary := flag.String("binary", "bin/lode-static", "the statically linked lode binary")
	tag := flag.String("tag", "lode:dev", "the image's name and tag")
	out := flag.String("o", "bin/lode-image.tar", "where to write the image tarball")
	flag.Parse()
	if err := image.Build(*binary, *tag, *out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s (%s): load it with `docker load -i %s`\n", *out, *tag, *out)
}
