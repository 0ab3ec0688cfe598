// Command h2spec runs the h2spec conformance suite (the library in
// ../shared/tools/h2spec/src, MIT) against one server. The shared copy of h2spec
// lacks its own command (its .gitignore left cmd/h2spec out), so tools/h2spec.sh
// builds this one instead: the same flags ringway's tests use, with Go's flag package.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/summerwind/h2spec"
	"github.com/summerwind/h2spec/config"
)

func main() {
	host := flag.String("h", "127.0.0.1", "target host")
	port := flag.Int("p", 0, "target port")
	path := flag.String("P", "/", "target path")
	timeout := flag.Int("o", 2, "seconds before a test case times out")
	maxHeaderLen := flag.Int("max-header-length", 4000, "longest header value to send")
	junit := flag.String("j", "", "path of a JUnit report to write")
	strict := flag.Bool("S", false, "run the strict test cases too")
	useTLS := flag.Bool("t", false, "connect over TLS (ALPN h2)")
	insecure := flag.Bool("k", false, "do not verify the server's certificate")
	verbose := flag.Bool("v", false, "verbose output")
	flag.Parse()
	if *port == 0 {
		*port = 80
		if *useTLS {
			*port = 443
		}
	}
	c := &config.Config{
		Host:         *host,
		Port:         *port,
		Path:         *path,
		Timeout:      time.Duration(*timeout) * time.Second,
		MaxHeaderLen: *maxHeaderLen,
		JUnitReport:  *junit,
		Strict:       *strict,
		TLS:          *useTLS,
		Insecure:     *insecure,
		Verbose:      *verbose,
		Sections:     flag.Args(),
	}
	ok, err := h2spec.Run(c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "h2spec: %s\n", err)
	}
	if !ok || err != nil {
		os.Exit(1)
	}
}
