// composecheck loads Compose files with compose-go, the Compose Specification's reference
// loader (the one docker compose itself uses), so a file docker compose would refuse fails here
// without a Docker engine: schema validation, interpolation, merge keys, overlays, depends_on
// and secret references.
//
//	composecheck DIR FILES [FILES...]
//
// Each FILES is one project: a file, or several joined by commas and loaded as overlays in
// that order (`-f a -f b`), relative to DIR. DIR is the project directory (where .env would be read). Prints
// each project's services; exits 1 on the first file that does not load.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: composecheck DIR FILES [FILES...]")
		os.Exit(2)
	}
	dir := os.Args[1]
	for _, set := range os.Args[2:] {
		files := strings.Split(set, ",")
		for i, f := range files {
			if !filepath.IsAbs(f) {
				files[i] = filepath.Join(dir, f)
			}
		}
		opts, err := cli.NewProjectOptions(files,
			cli.WithWorkingDirectory(dir),
			cli.WithOsEnv,
			cli.WithDotEnv,
			cli.WithInterpolation(true),
			cli.WithResolvedPaths(true),
		)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", set, err)
			os.Exit(1)
		}
		project, err := opts.LoadProject(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: docker compose would refuse it: %v\n", set, err)
			os.Exit(1)
		}
		names := make([]string, 0, len(project.Services))
		for name := range project.Services {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Printf("%s: loads as docker compose loads it; %d services: %s\n",
			set, len(names), strings.Join(names, ", "))
	}
}
