package check_test

import (
	"context"
	"fmt"
	"log"
	"regexp"
	"time"

	"github.com/echod/echod/check"
)

// A Go test can hold its own echo server to the suite; here, the checks
// about the half-close against a server on port 7007.
func ExampleRun() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := check.Run(ctx, check.Config{
		Addr: "127.0.0.1:7007",
		Run:  regexp.MustCompile(`^(empty|close-after-eof|slow-reader)$`),
	})
	if err != nil {
		log.Fatal(err) // nothing is listening, or the address is wrong
	}
	for _, r := range rep.Results {
		if r.Status == check.Fail {
			fmt.Printf("%s: %s\n", r.Name, r.Reason)
		}
	}
}
