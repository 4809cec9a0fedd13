package cli

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/keelboot/keel/update"
)

// One install at a time: keel install holds the lock of package update
// (update.TakeLock) from its planning to its last commit.

// lockFor takes the install lock for an install of source: the image's
// (--image) or the device's.
func (c *command) lockFor(f installFlags, source string) (*update.Lock, error) {
	path, target := update.DeviceLockPath(c.deps.RunDir), "this device"
	if c.g.image != "" {
		path, target = update.ImageLockPath(c.g.image), c.g.image
	}
	st := update.LockStatus{PID: os.Getpid(), Source: update.RedactSource(source), Target: target, Started: time.Now().UTC()}
	return update.TakeLock(c.ctx, path, st, f.wait, 250*time.Millisecond, func(other string) {
		fmt.Fprintf(c.stderr, "keel: another keel install is running (%s): waiting for it to finish (--wait)\n", strings.TrimSpace(other))
	})
}
