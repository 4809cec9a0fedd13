package update

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/slotwrite"
)

// One install at a time (TakeLock; keel install and any other caller of
// the plans take the same lock). Two runs writing the same slot would each take
// the other's half-written slot for a cut install to resume, and one could
// put a slot on trial while the other still writes it. So a run holds an
// exclusive lock (flock(2)) from its planning to its last commit:
//
//   - on a device, on LockName in keel's /run folder (DeviceLockPath; a
//     tmpfs: a lock never outlives the boot);
//   - offline, on a file beside the disk image (ImageLockPath; the
//     image's symbolic links resolved, so every link to it shares the
//     lock).
//
// The kernel drops the lock when its holder exits, however it exits. The
// holder keeps a small status in the file (LockStatus: pid, source,
// target, progress), which a second run reads to say which install runs;
// it refuses at once, or waits (keel install --wait). The holder removes the file
// when it is done (after checking that the path still names the file it
// locked; a run that opened the old file sees it is gone and opens the
// new one). The lock covers one host; the boot record's install token
// (bootenv.BeginInstall, FinishInstall) covers the rest: two hosts writing
// one image, a run whose lock file was removed.

// LockName is the lock's file in keel's /run folder (layout.RunDir).
const LockName = "install.lock"

// DeviceLockPath is the device's lock file in keel's /run folder runDir.
func DeviceLockPath(runDir string) string { return filepath.Join(runDir, LockName) }

// PhaseName is a slotwrite.Event's phase as a person reads it ("" for a
// phase keel does not know).
func PhaseName(phase string) string {
	switch phase {
	case "index":
		return "reading the device's blocks"
	case "write":
		return "writing"
	case "verify":
		return "verifying"
	case "done":
		return "done"
	}
	return ""
}

// imageLockSuffix names the lock beside a disk image.
const imageLockSuffix = ".keel-install.lock"

// ImageLockPath is the lock file of the disk image img.
func ImageLockPath(img string) string {
	if p, err := filepath.EvalSymlinks(img); err == nil {
		img = p
	}
	if p, err := filepath.Abs(img); err == nil {
		img = p
	}
	return img + imageLockSuffix
}

// lockStatusSize is what a status write fills (padded with spaces), so
// that a reader never sees the end of an earlier, longer status;
// maxLockStatus bounds what a reader reads of a file anyone who can write
// the folder could have filled.
const (
	lockStatusSize = 512
	maxLockStatus  = 4096
)

// LockStatus is what a running install keeps in its lock file.
type LockStatus struct {
	PID int `json:"pid"`
	// Source is the bundle's source (a URL without its user, query and
	// fragment: they may hold credentials).
	Source string `json:"source"`
	// Target is where it installs: "slot b", or the disk image.
	Target  string    `json:"target"`
	Started time.Time `json:"started"`
	// Phase is slotwrite.Event's ("" before the first), with its bytes.
	Phase string `json:"phase,omitempty"`
	Done  int64  `json:"done,omitempty"`
	Total int64  `json:"total,omitempty"`
}

// Describe is the status for a message: untrusted text is quoted.
func (s LockStatus) Describe(now time.Time) string {
	what := "planning"
	if name := PhaseName(s.Phase); name != "" {
		what = name
		if s.Total > 0 {
			what += fmt.Sprintf(" %.0f%% of %.1f MiB", 100*float64(s.Done)/float64(s.Total), float64(s.Total)/(1<<20))
		}
	}
	ago := "a moment"
	if d := now.Sub(s.Started); d >= time.Second && !s.Started.IsZero() {
		ago = d.Round(time.Second).String()
	}
	return fmt.Sprintf("pid %d, started %s ago: installing %q into %q, %s", s.PID, ago, s.Source, s.Target, what)
}

// RedactSource is the source as a status shows it: a URL without its
// user information, query and fragment.
func RedactSource(src string) string {
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return bootenv.Text(src)
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return bootenv.Text(u.String())
}

// Lock is a held install lock.
type Lock struct {
	f      *os.File
	path   string
	status LockStatus
	now    func() time.Time
	last   time.Time // of the last status write
}

// errLockBusy: another run holds the lock.
type errLockBusy struct{ other string }

func (e errLockBusy) Error() string { return "another keel install is running (" + e.other + ")" }

// TakeLock takes the lock at path for an install of status. When
// another run holds it: without wait it returns an ErrRefused error naming
// that run; with wait it calls waiting once with that run's description
// and tries again every poll until the lock is free or ctx ends.
func TakeLock(ctx context.Context, path string, status LockStatus, wait bool, poll time.Duration, waiting func(other string)) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("install lock: %w", err)
	}
	told := false
	for {
		l, err := tryLock(path)
		var busy errLockBusy
		switch {
		case err == nil:
			l.status, l.now = status, time.Now
			if err := l.write(); err != nil {
				l.Release()
				return nil, err
			}
			return l, nil
		case !errors.As(err, &busy):
			return nil, err
		case !wait:
			return nil, fmt.Errorf("%w: %w; wait for it to finish, or give --wait to run after it", bootenv.ErrRefused, busy)
		case !told:
			waiting(busy.other)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the install lock %s: %w", path, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// tryLock opens path (never through a symbolic link, never blocking on
// what is not a regular file) and takes the lock without waiting; an
// errLockBusy describes the holder.
func tryLock(path string) (*Lock, error) {
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o644)
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("install lock %s is a symbolic link, not a regular file: remove it", path)
		}
		if err != nil {
			return nil, fmt.Errorf("install lock: %w", &os.PathError{Op: "open", Path: path, Err: err})
		}
		f := os.NewFile(uintptr(fd), path)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			f.Close()
			return nil, fmt.Errorf("install lock %s is not a regular file: remove it", path)
		}
		if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
			defer f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errLockBusy{readStatus(f, path)}
			}
			return nil, fmt.Errorf("install lock %s: %w", path, err)
		}
		// The holder before us removes the file when it is done: if it
		// did so after we opened it, the lock is on a file no other run
		// sees. Take the one at path.
		var now unix.Stat_t
		if err := unix.Lstat(path, &now); err != nil || now.Dev != st.Dev || now.Ino != st.Ino {
			f.Close()
			continue
		}
		return &Lock{f: f, path: path}, nil
	}
}

// readStatus describes the holder of the lock file f from its status (a
// few tries: the holder may be writing it).
func readStatus(f *os.File, path string) string {
	var last error
	for i := 0; i < 5; i++ {
		b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, maxLockStatus), maxLockStatus))
		if err == nil {
			var s LockStatus
			if s, err = parseStatus(b); err == nil {
				return s.Describe(time.Now())
			}
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Sprintf("it holds %s; its status cannot be read: %v", path, last)
}

// parseStatus reads a lock file's status (written by anyone who can write
// the lock's folder: Describe quotes its text).
func parseStatus(b []byte) (LockStatus, error) {
	var s LockStatus
	if err := json.Unmarshal(bytes.TrimSpace(b), &s); err != nil {
		return s, err
	}
	if s.PID <= 0 {
		return s, errors.New("no pid in it")
	}
	return s, nil
}

// write stores the status in the lock file.
func (l *Lock) write() error {
	b, err := json.Marshal(l.status)
	if err != nil {
		return err
	}
	if len(b) < lockStatusSize {
		b = append(b, bytes.Repeat([]byte(" "), lockStatusSize-len(b)-1)...)
	}
	b = append(b, '\n')
	l.last = l.now()
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("install lock %s: %w", l.path, err)
	}
	if len(b) > lockStatusSize {
		return l.f.Truncate(int64(len(b)))
	}
	return nil
}

// Progress records an install's progress in the status: at each new phase
// and every second (a failed write only loses the status).
func (l *Lock) Progress(e slotwrite.Event) {
	if l == nil {
		return
	}
	changed := e.Phase != l.status.Phase
	l.status.Phase, l.status.Done, l.status.Total = e.Phase, e.Done, e.Total
	if changed || l.now().Sub(l.last) >= time.Second {
		_ = l.write()
	}
}

// Status is the status the lock file holds.
func (l *Lock) Status() LockStatus { return l.status }

// SetTarget records where the install goes once it is known.
func (l *Lock) SetTarget(target string) {
	if l == nil {
		return
	}
	l.status.Target = target
	_ = l.write()
}

// Release removes the lock file (if the path still names it) and drops
// the lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	var st, now unix.Stat_t
	if unix.Fstat(int(l.f.Fd()), &st) == nil && unix.Lstat(l.path, &now) == nil && st.Dev == now.Dev && st.Ino == now.Ino {
		_ = os.Remove(l.path)
	}
	err := l.f.Close()
	l.f = nil
	return err
}
