//go:build linux

package kexec

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelboot/keel/format/cpio"
)

// TestAppendFiles: the handed-over files land in a newc archive after the
// initrd, starting 4-byte aligned (where the kernel looks for the next
// archive), under keel/ with the permissions asked for (the trusted keys
// read-only).
func TestAppendFiles(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	initrd := []byte("\x28\xb5\x2f\xfd12345") // 9 bytes: not aligned
	f.Write(initrd)
	log := []byte(`{"pcr":8,"type":"keel.separator"}` + "\n")
	keys := []byte("# build key\nkeel-ed25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= release\n")
	err = AppendFiles(f,
		File{Name: "keel/trusted-keys", Perm: 0o444, Data: keys},
		File{Name: "keel/eventlog.jsonl", Perm: 0o644, Data: log})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := os.ReadFile(f.Name())
	if !bytes.HasPrefix(all, initrd) || !bytes.Equal(all[9:12], []byte{0, 0, 0}) {
		t.Fatalf("initrd changed or not padded: % x", all[:16])
	}
	r := cpio.NewReader(bytes.NewReader(all[12:]))
	want := map[string]struct {
		mode uint32
		data []byte
	}{
		"keel":                {cpio.TypeDir | 0o755, nil},
		"keel/eventlog.jsonl": {cpio.TypeReg | 0o644, log},
		"keel/trusted-keys":   {cpio.TypeReg | 0o444, keys},
	}
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
		w, ok := want[rec.Name]
		if !ok {
			continue
		}
		if rec.Mode != w.mode || !bytes.Equal(rec.Data, w.data) {
			t.Errorf("%s: mode %06o, data %q; want %06o, %q", rec.Name, rec.Mode, rec.Data, w.mode, w.data)
		}
	}
	if strings.Join(names, " ") != "keel keel/eventlog.jsonl keel/trusted-keys" {
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
