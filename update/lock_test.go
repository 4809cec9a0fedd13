package update

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/slotwrite"
)

// TestInstallLockFile: the lock file holds the running install's status
// (no credentials from its source), is refused when it is not a regular
// file (a symbolic link planted there is never followed), and is removed
// when the install is done.
func TestInstallLockFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", LockName)
	st := LockStatus{PID: 4242, Source: RedactSource("https://user:secret@updates.example/v2.bundle?token=abc#frag"),
		Target: "slot b", Started: time.Now().Add(-time.Minute)}
	if strings.Contains(st.Source, "secret") || strings.Contains(st.Source, "abc") || st.Source != "https://updates.example/v2.bundle" {
		t.Errorf("redacted source %q", st.Source)
	}
	ctx := context.Background()
	l, err := TakeLock(ctx, path, st, false, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Progress(slotwrite.Event{Phase: "write", Done: 50 << 20, Total: 100 << 20})
	_, err = TakeLock(ctx, path, st, false, time.Millisecond, nil)
	for _, want := range []string{"another keel install is running", "pid 4242", "started 1m0s ago", `"https://updates.example/v2.bundle"`, `"slot b"`, "writing 50% of 100.0 MiB"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("second lock: %v, want it to say %q", err, want)
		}
	}
	if !errors.Is(err, bootenv.ErrRefused) {
		t.Errorf("second lock: %v, want ErrRefused", err)
	}
	// A status that cannot be read (a torn or planted file) still names
	// the lock.
	if err := os.WriteFile(path, []byte("\x1b[2Jgarbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := TakeLock(ctx, path, st, false, time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "its status cannot be read") {
		t.Errorf("lock with an unreadable status: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lock file stays after the release: %v", err)
	}
	// Waiting: the lock is taken once the holder releases it; a run that
	// opened the removed file takes the new one.
	l, err = TakeLock(ctx, path, st, false, time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lock, 1)
	waited := make(chan string, 1)
	go func() {
		l2, err := TakeLock(ctx, path, st, true, time.Millisecond, func(other string) { waited <- other })
		if err != nil {
			t.Error(err)
		}
		got <- l2
	}()
	if other := <-waited; !strings.Contains(other, "pid 4242") {
		t.Errorf("waiting for %q", other)
	}
	l.Release()
	l2 := <-got
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("the second holder's lock file: %v", err)
	}
	l2.Release()
	// Waiting ends with the context.
	l, _ = TakeLock(ctx, path, st, false, time.Millisecond, nil)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := TakeLock(cctx, path, st, true, time.Millisecond, func(string) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting past the deadline: %v", err)
	}
	l.Release()
	// Not a regular file: refused, nothing followed or created.
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if _, err := TakeLock(ctx, path, st, false, time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("lock through a symbolic link: %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link was followed: %v", err)
	}
	os.Remove(path)
	if err := unix.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := TakeLock(ctx, path, st, false, time.Millisecond, nil); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("lock on a FIFO: %v", err)
	}
}

// FuzzLockStatus: whatever a lock file holds, reading it never panics and
// the description a refusal prints has no control characters (no
// terminal escapes from a planted file).
func FuzzLockStatus(f *testing.F) {
	b, _ := json.Marshal(LockStatus{PID: 7, Source: "https://h/b.bundle", Target: "slot b", Phase: "write", Done: 1, Total: 2})
	f.Add(b)
	f.Add([]byte(`{"pid":1,"source":"\u001b[2J","target":"\n","phase":"write","total":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStatus(b)
		if err != nil {
			return
		}
		d := s.Describe(time.Now())
		for _, r := range d {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("description %q has a control character", d)
			}
		}
	})
}
