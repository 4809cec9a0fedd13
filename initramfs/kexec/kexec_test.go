//go:build linux

package kexec

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/keelboot/keel/format/cpio"
)

// TestAppendFiles: the event log lands in a newc archive after the
// initrd, starting 4-byte aligned (where the kernel looks for the next
// archive), as keel/eventlog.jsonl.
func TestAppendFiles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	initrd := []byte("\x28\xb5\x2f\xfd12345") // 9 bytes: not aligned
	f.Write(initrd)
	log := []byte(`{"pcr":8,"type":"keel.separator"}` + "\n")
	if err := AppendFiles(f, map[string][]byte{"keel/eventlog.jsonl": log}); err != nil {
		t.Fatal(err)
	}
	all, _ := os.ReadFile(f.Name())
	if !bytes.HasPrefix(all, initrd) || !bytes.Equal(all[9:12], []byte{0, 0, 0}) {
		t.Fatalf("initrd changed or not padded: % x", all[:16])
	}
	r := cpio.NewReader(bytes.NewReader(all[12:]))
	var names []string
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, rec.Name)
		if rec.Name == "keel/eventlog.jsonl" && !bytes.Equal(rec.Data, log) {
			t.Errorf("eventlog.jsonl holds %q", rec.Data)
		}
	}
	if len(names) != 2 || names[0] != "keel" || names[1] != "keel/eventlog.jsonl" {
		t.Errorf("archive holds %q", names)
	}
}

// TestExecErrorIsEnvironmental: a failed jump is not the slot's fault.
func TestExecErrorIsEnvironmental(t *testing.T) {
	var e interface{ Environmental() bool }
	if err := (execError{errors.New("reboot(KEXEC): operation not permitted")}); !errors.As(err, &e) || !e.Environmental() {
		t.Error("a failed reboot(KEXEC) is not marked environmental")
	}
}
