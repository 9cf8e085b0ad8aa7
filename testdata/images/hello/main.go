// Command hello is the end-to-end tests' workload: a static HTTP server that says who it is,
// fetches URLs for the caller (to test cluster DNS and Services from inside a pod) and keeps a
// value in a file (to test persistent volumes).
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	dataDir := flag.String("data", "/data", "directory for /write and /read")
	flag.Parse()
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	http.HandleFunc("/fetch", func(w http.ResponseWriter, r *http.Request) {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(r.URL.Query().Get("url"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		io.Copy(w, resp.Body)
	})
	http.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, os.Getenv(r.URL.Query().Get("name")))
	})
	http.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile(filepath.Join(*dataDir, "value"), []byte(r.URL.Query().Get("v")), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(*dataDir, "value"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	// /log writes its msg to stdout (for the log collector); /metrics exports a counter of
	// requests in the Prometheus text format (for the metrics scraper); /crash exits with 1.
	var requests atomic.Int64
	http.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		fmt.Println(r.URL.Query().Get("msg"))
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP hello_requests_total Requests to /log.\n# TYPE hello_requests_total counter\nhello_requests_total %d\n", requests.Load())
	})
	if msg := os.Getenv("HELLO_START_LOG"); msg != "" {
		fmt.Println(msg)
	}
	if os.Getenv("HELLO_CRASH") != "" {
		log.Fatal("HELLO_CRASH is set: exiting")
	}
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
