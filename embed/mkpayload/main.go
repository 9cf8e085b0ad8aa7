// Command mkpayload compresses the gluebox program for the launcher (embed/launcher):
// it writes gluebox.zst and the SHA-256 of the uncompressed program to gluebox.sha256.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

func main() {
	in := flag.String("in", "bin/gluebox-core", "program to compress")
	out := flag.String("out", "embed/launcher/payload", "output directory")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkpayload:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	src, err := os.Open(in)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(out, "gluebox.zst.tmp")
	dst, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw, err := zstd.NewWriter(dst, zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
	if err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(zw, io.TeeReader(src, h)); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(out, "gluebox.zst")); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "gluebox.sha256"), []byte(hex.EncodeToString(h.Sum(nil))+"\n"), 0o644)
}
