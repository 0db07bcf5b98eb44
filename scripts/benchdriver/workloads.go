package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// floodC makes one cheap syscall a million times: the audit pipeline's worst
// case, an event per syscall and almost no work between them.
const floodC = `#define _GNU_SOURCE
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
	for (int i = 0; i < 1000000; i++)
		syscall(SYS_getppid);
	return 0;
}
`

// churnC creates, writes and deletes 20,000 files in its working directory:
// path-carrying syscalls (openat, unlinkat), which cost the audit more than
// getppid does.
const churnC = `#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(void) {
	char name[32];
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof name, "churn-%d", i);
		int fd = open(name, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0) { perror(name); return 1; }
		if (write(fd, "deputy\n", 7) != 7) { perror("write"); return 1; }
		if (close(fd) != 0) { perror("close"); return 1; }
		if (unlink(name) != 0) { perror("unlink"); return 1; }
	}
	return 0;
}
`

// buildC compiles src into dir/name, mode 0755, so that the sandbox's
// filesystem.exec grant on dir lets the agent run it.
func buildC(dir, name, src string) (string, error) {
	c := filepath.Join(dir, name+".c")
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("gcc", "-O2", "-o", bin, c).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", c, err, out)
	}
	return bin, os.Chmod(bin, 0o755)
}

// searchWord is what the realistic job greps for.
const searchWord = "deputy"

// writeSourceTarball writes a gzipped tar of a made-up source tree: 2,000
// text files of 1-6 KiB in 40 directories, deterministic so that every run
// does the same work.
func writeSourceTarball(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("int char return static const struct if else for while void unsigned size_t " +
		"buffer length count index error result value table entry " + searchWord + " node list next prev")
	for d := range 40 {
		dir := fmt.Sprintf("src/mod%02d/", d)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755}); err != nil {
			return err
		}
		for i := range 50 {
			var b strings.Builder
			size := 1024 + rng.IntN(5*1024)
			for b.Len() < size {
				for w := range 8 {
					if w > 0 {
						b.WriteByte(' ')
					}
					b.WriteString(words[rng.IntN(len(words))])
				}
				b.WriteString(";\n")
			}
			body := b.String()
			hdr := &tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sfile%03d.c", dir, i), Mode: 0o644, Size: int64(len(body))}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write([]byte(body)); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
