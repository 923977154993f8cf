// Command fetch GETs a URL, following redirects, and prints the final
// status: the stand-in "browser" of scripts/bench's sign-in. (curl is not
// guaranteed on a fresh machine; Go is.)
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: fetch URL")
		os.Exit(2)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "fetch:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	fmt.Println(resp.Status)
}
