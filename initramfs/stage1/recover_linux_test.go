//go:build linux

package stage1

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/slotwrite"
)

// TestReinstallProgress: a reinstall's console lines are the slot
// writer's phases, each from 0 to 100%, the write's named "reinstall
// slot" (the VM tests and the torture test cut and wait on those lines,
// and on its 100% line before KEEL-RECOVERED); the rate counts from the
// phase's start.
func TestReinstallProgress(t *testing.T) {
	var lines []string
	d := &deviceRecoverer{logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}
	ev := d.events("b")
	const mib = 1 << 20
	for _, e := range []slotwrite.Event{
		{Phase: "index", Done: 0, Total: 8 * mib},
		{Phase: "index", Done: 8 * mib, Total: 8 * mib, Elapsed: time.Second},
		{Phase: "write", Done: 0, Total: 10 * mib, Elapsed: time.Second},
		{Phase: "write", Done: 5 * mib, Total: 10 * mib, Elapsed: 2 * time.Second},
		{Phase: "write", Done: 10 * mib, Total: 10 * mib, Elapsed: 3 * time.Second},
		{Phase: "verify", Done: 2 * mib, Total: 2 * mib, Elapsed: 4 * time.Second},
		{Phase: "done", Elapsed: 4 * time.Second},
	} {
		ev(e)
	}
	want := []string{
		"KEEL-PROGRESS reading slot b   0% (0 of 8 MiB, 0.0 MB/s)",
		"KEEL-PROGRESS reading slot b 100% (8 of 8 MiB, 8.4 MB/s)",
		"KEEL-PROGRESS reinstall slot b   0% (0 of 10 MiB, 0.0 MB/s)",
		"KEEL-PROGRESS reinstall slot b  50% (5 of 10 MiB, 5.2 MB/s)",
		"KEEL-PROGRESS reinstall slot b 100% (10 of 10 MiB, 5.2 MB/s)",
		"KEEL-PROGRESS verifying slot b 100% (2 of 2 MiB, 0.0 MB/s)",
	}
	if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}
