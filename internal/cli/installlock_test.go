package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/bootenv/bootstore"
	"github.com/keelboot/keel/update"
)

// imageRecord reads the boot record of a disk image.
func imageRecord(t *testing.T, img string) bootenv.Record {
	t.Helper()
	tg, err := openTarget(bootstore.Location{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	r, err := tg.LoadRecord()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// waitRecord polls the image's record until ok says yes.
func waitRecord(t *testing.T, img string, what string, ok func(bootenv.Record) bool) bootenv.Record {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := imageRecord(t, img)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: the record is %+v", what, r)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pipedInstall is a `keel --image IMG install -` running in the
// background, reading the bundle from a pipe the test feeds.
type pipedInstall struct {
	w    *io.PipeWriter
	done chan result
}

func startPipedInstall(t *testing.T, f *updateFixture, img string, extra ...string) *pipedInstall {
	t.Helper()
	pr, pw := io.Pipe()
	p := &pipedInstall{w: pw, done: make(chan result, 1)}
	args := append([]string{"--image", img, "install", "--keys", f.pubFile, "--progress", "none"}, extra...)
	args = append(args, "-")
	go func() {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, &out, &errb, Deps{Cmdline: func() (string, error) { return "", nil }, Stdin: pr})
		pr.Close()
		p.done <- result{out.String(), errb.String(), code}
	}()
	return p
}

// feed writes b to the install's pipe (in the background: the install
// may stop reading).
func (p *pipedInstall) feed(b []byte) {
	go func() {
		p.w.Write(b)
	}()
}

func (p *pipedInstall) finish(t *testing.T, rest []byte) result {
	t.Helper()
	go func() {
		p.w.Write(rest)
		p.w.Close()
	}()
	select {
	case r := <-p.done:
		return r
	case <-time.After(60 * time.Second):
		t.Fatal("the install did not finish")
	}
	return result{}
}

// headerBytes is enough of a bundle for the install to check it and
// record the slot as being written.
const headerBytes = 64 << 10

// imageWithRecord is a disk image with slot a holding version 1, active.
func imageWithRecord(t *testing.T, f *updateFixture) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	testDisk(t, img, f.v1, true)
	keel(t, "--image", img, "init", "--active", "a").ok(t)
	return img
}

// TestInstallRefusesSecondRun: while an install writes the image, a
// second one refuses at once, naming the running one (its pid, source and
// progress), and changes nothing; the first then completes and arms the
// trial.
func TestInstallRefusesSecondRun(t *testing.T) {
	f := newUpdateFixture(t)
	img := imageWithRecord(t, f)
	b2, _ := os.ReadFile(f.b2)
	first := startPipedInstall(t, f, img)
	first.feed(b2[:headerBytes])
	begun := waitRecord(t, img, "the first install to begin", func(r bootenv.Record) bool { return r.Installing == "b" })
	second := keel(t, "--image", img, "install", "--keys", f.pubFile, "--progress", "none", f.b2)
	second.fails(t, ExitUsage, "another keel install is running")
	t.Logf("the second run: %s", second.stderr)
	for _, want := range []string{"pid " + strconv.Itoa(os.Getpid()), `"-"`, "--wait"} {
		if !strings.Contains(second.stderr, want) {
			t.Errorf("the refusal does not name %q: %s", want, second.stderr)
		}
	}
	if strings.Contains(second.stderr, "unbootable") {
		t.Errorf("the refused run says the slot is unbootable: %s", second.stderr)
	}
	if r := imageRecord(t, img); !r.Equal(begun) {
		t.Errorf("the refused run changed the record:\n%+v\nwant\n%+v", r, begun)
	}
	first.finish(t, b2[headerBytes:]).ok(t)
	r := imageRecord(t, img)
	if s, _ := r.Slot("b"); r.Trial != "b" || s.Version != "2.0" || r.Installing != "" {
		t.Errorf("after the first install: %+v", r)
	}
	if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("slot b does not hold version 2")
	}
	if _, err := os.Lstat(update.ImageLockPath(img)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lock file stays after the install: %v", err)
	}
}

// TestInstallLockOnDevice: on a device the lock is in keel's /run folder:
// while an install runs, a second refuses, naming it.
func TestInstallLockOnDevice(t *testing.T) {
	f := newUpdateFixture(t)
	d := newFakeDevice(t, f)
	keelDeps(t, d.deps(t, nil), "--efivars", d.efi, "init", "--active", "a").ok(t)
	b2, _ := os.ReadFile(f.b2)
	pr, pw := io.Pipe()
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := Main(context.Background(), []string{"install", "--progress", "none", "-"}, &out, &errb, d.deps(t, pr))
		done <- result{out.String(), errb.String(), code}
	}()
	go pw.Write(b2[:headerBytes])
	lock := update.DeviceLockPath(d.run)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(lock); err == nil && strings.Contains(string(b), `"phase"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the install holds no lock in the run folder")
		}
		time.Sleep(10 * time.Millisecond)
	}
	keelDeps(t, d.deps(t, nil), "install", "--progress", "none", f.b2).fails(t, ExitUsage, "another keel install is running (pid "+strconv.Itoa(os.Getpid()))
	go func() { pw.Write(b2[headerBytes:]); pw.Close() }()
	(<-done).ok(t)
	if _, err := os.Lstat(lock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the lock file stays after the install: %v", err)
	}
}

// TestInstallsRacing: two installs started together into one image: one
// installs and arms the trial, the other refuses without touching the
// record or the slot; the slot on trial holds exactly the bundle's root.
func TestInstallsRacing(t *testing.T) {
	f := newUpdateFixture(t)
	for i := 0; i < 3; i++ {
		img := imageWithRecord(t, f)
		var wg sync.WaitGroup
		res := make([]result, 2)
		for j := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out, errb bytes.Buffer
				code := Main(context.Background(), []string{"--image", img, "install", "--keys", f.pubFile, "--progress", "none", "--no-delta", f.b2},
					&out, &errb, Deps{Cmdline: func() (string, error) { return "", nil }})
				res[j] = result{out.String(), errb.String(), code}
			}()
		}
		wg.Wait()
		okRuns := 0
		for _, r := range res {
			switch {
			case r.code == 0:
				okRuns++
			case r.code != ExitUsage || !strings.Contains(r.stderr, "another keel install is running"):
				t.Errorf("race %d: a run failed otherwise than by refusing: exit %d: %s", i, r.code, r.stderr)
			}
			if strings.Contains(r.stderr, "unbootable") {
				t.Errorf("race %d: %s", i, r.stderr)
			}
		}
		if okRuns != 1 {
			t.Errorf("race %d: %d runs installed, want 1: %+v", i, okRuns, res)
		}
		r := imageRecord(t, img)
		if s, _ := r.Slot("b"); r.Trial != "b" || s.Version != "2.0" || r.Installing != "" {
			t.Errorf("race %d: record %+v", i, r)
		}
		if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
			t.Errorf("race %d: slot b does not hold version 2", i)
		}
	}
}

// TestInstallWait: --wait waits for the running install, then runs.
func TestInstallWait(t *testing.T) {
	f := newUpdateFixture(t)
	img := imageWithRecord(t, f)
	b2, _ := os.ReadFile(f.b2)
	first := startPipedInstall(t, f, img, "--no-try")
	first.feed(b2[:headerBytes])
	waitRecord(t, img, "the first install to begin", func(r bootenv.Record) bool { return r.Installing == "b" })
	second := make(chan result, 1)
	var errb syncBuffer
	go func() {
		var out bytes.Buffer
		code := Main(context.Background(), []string{"--image", img, "install", "--keys", f.pubFile, "--progress", "none", "--wait", f.b2},
			&out, &errb, Deps{Cmdline: func() (string, error) { return "", nil }})
		second <- result{out.String(), errb.String(), code}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errb.String(), "waiting for it") {
		if time.Now().After(deadline) {
			t.Fatalf("the second run does not say it waits: %q", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case r := <-second:
		t.Fatalf("the second run did not wait: exit %d: %s", r.code, r.stderr)
	case <-time.After(300 * time.Millisecond):
	}
	first.finish(t, b2[headerBytes:]).ok(t)
	var r result
	select {
	case r = <-second:
	case <-time.After(60 * time.Second):
		t.Fatal("the second run did not run after the first")
	}
	r.ok(t)
	if !strings.Contains(r.stdout, "slot b is on trial") {
		t.Errorf("the second run: %s", r.stdout)
	}
	if rec := imageRecord(t, img); rec.Trial != "b" || rec.Installing != "" {
		t.Errorf("after both: %+v", rec)
	}
}

// TestInstallStaleRunCannotFinish: a run that lost its lock (here its
// lock file was removed, so a second run could start) and was overtaken
// by a later run cannot finish: its record token is no longer the one the
// record holds; it fails without touching the record, saying what the
// slot's state is, and the later run arms the trial.
func TestInstallStaleRunCannotFinish(t *testing.T) {
	f := newUpdateFixture(t)
	img := imageWithRecord(t, f)
	b2, _ := os.ReadFile(f.b2)
	first := startPipedInstall(t, f, img)
	first.feed(b2[:headerBytes])
	begun := waitRecord(t, img, "the first install to begin", func(r bootenv.Record) bool { return r.Installing == "b" })
	os.Remove(update.ImageLockPath(img))
	second := startPipedInstall(t, f, img)
	second.feed(b2[:headerBytes])
	overtaken := waitRecord(t, img, "the second install to begin", func(r bootenv.Record) bool { return r.Generation > begun.Generation })
	r1 := first.finish(t, b2[headerBytes:])
	r1.fails(t, ExitUsage, "another install")
	t.Logf("the stale run: %s", r1.stderr)
	if strings.Contains(r1.stderr, "unbootable") || !strings.Contains(r1.stderr, "slot b is being written by another install") {
		t.Errorf("the stale run's message does not state the slot's real state: %s", r1.stderr)
	}
	if r := imageRecord(t, img); !r.Equal(overtaken) {
		t.Errorf("the stale run changed the record:\n%+v\nwant\n%+v", r, overtaken)
	}
	second.finish(t, b2[headerBytes:]).ok(t)
	if r := imageRecord(t, img); r.Trial != "b" || r.Installing != "" {
		t.Errorf("after the second install: %+v", r)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
