package vmtests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/update/channel"
	"github.com/keelboot/keel/vmtests/vmkit"
)

// debianUpdate is the test's update agent (the slot has no network): it
// mounts the USB stick and runs keel update check and apply against the
// channel folder not used yet on this device (expired/, then fresh/;
// remembered in the shared data area), printing KEEL-UPDATE lines. It
// exits 0 when apply installed an update (the report then reboots).
const debianUpdate = `#!/bin/sh
done=/data/shared/keel-test
for c in expired fresh; do
	[ -e "$done/update-$c" ] && continue
	mkdir -p "$done" && touch "$done/update-$c" && sync
	mkdir -p /run/keel-test-stick
	mount -o ro,noload /dev/vdb /run/keel-test-stick || { echo "KEEL-UPDATE mount failed"; exit 1; }
	args="--channel /run/keel-test-stick/$c --state /run/keel-test-channel --device-id keel-test"
	echo "KEEL-UPDATE-CHECK $c $(keel update check $args --json 2>/dev/null | tr -d '\n')"
	keel update apply $args --progress none > /tmp/keel-update 2>&1
	rc=$?
	echo "KEEL-UPDATE $c rc=$rc $(tr '\n' ' ' < /tmp/keel-update)"
	umount /run/keel-test-stick
	[ $rc = 0 ] && grep -q "^installed version" /tmp/keel-update
	exit $?
done
exit 1
`

// TestDebianUpdateChannel (issue 23): the Debian slot a (version 1.0)
// carries a channel's root.json and URL in its verified root; a USB stick
// holds two copies of that channel, both with version 2.0 (a new kernel
// side on the same root) at 100%. The first power-on checks expired/, a
// copy whose timestamp expired yesterday (a frozen mirror): keel update
// refuses it naming the expiry, nothing is installed, the device powers
// off with a still running slot a. The second power-on checks fresh/ (the
// same channel after keel channel refresh): it installs 2.0 into b,
// reboots into b's trial, which commits.
func TestDebianUpdateChannel(t *testing.T) {
	t.Parallel()
	art := debianArtefacts(t, 0)
	dir := t.TempDir()
	// The channel, signed two days ago: its timestamp (a day) expired.
	repo := &channel.Repo{Dir: filepath.Join(dir, "stick", "fresh"), Keys: channel.Keys{Dir: filepath.Join(dir, "keys")},
		Now: time.Now().Add(-48 * time.Hour)}
	if err := repo.Init(nil); err != nil {
		t.Fatal(err)
	}
	root := debianRoot(t, art, filepath.Join(dir, "root"), debianSlot{health: "ok", update: true})
	rootJSON, err := os.ReadFile(filepath.Join(repo.Dir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{layout.ChannelRootPath: rootJSON, layout.ChannelURLPath: []byte("/run/keel-test-stick/fresh\n")} {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vm, err := vmkit.NewMachine(context.Background(), art, t.TempDir(), map[string]vmkit.SlotSpec{
		"a": {Version: "1.0", SecurityVersion: 1, RootDir: root},
		"b": {Empty: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	enrolledAtTheFactory(t, vm)
	b2 := filepath.Join(dir, "v2.bundle")
	if _, err := vm.Art.Bundle(context.Background(), b2, "a", vmkit.SlotSpec{Version: "2.0", SecurityVersion: 1, RootDir: root}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Publish(context.Background(), channel.Publish{Bundle: b2, Rollout: 100}); err != nil {
		t.Fatal(err)
	}
	os.Remove(b2)
	// expired/: the metadata as it is now (no target file: the device
	// must refuse before it reads one); fresh/: after keel channel refresh.
	expired := filepath.Join(dir, "stick", "expired")
	if out, err := exec.Command("sh", "-c", `mkdir -p "$1" && cp "$2"/*.json "$1"/`, "sh", expired, repo.Dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	repo.Now = time.Time{}
	if err := repo.Refresh(); err != nil {
		t.Fatal(err)
	}
	stick := filepath.Join(dir, "stick.ext4")
	if _, err := image.Rootfs(context.Background(), stick, image.RootfsOptions{Type: image.FSExt4, Dir: filepath.Join(dir, "stick"), Size: 256 << 20}); err != nil {
		t.Fatal(err)
	}
	vm.Stick = stick

	// Power-on 1: the expired copy is refused, nothing installed.
	r := powerOnDebian(t, vm, 6*bootTimeout)
	r.booted("a", "normal")
	chk := r.expect(regexp.MustCompile(`KEEL-UPDATE-CHECK expired ([^\r\n]*)\r*\n`))
	if !regexp.MustCompile(`"reason":\s*"expired"`).MatchString(chk[1]) || !strings.Contains(chk[1], "timestamp metadata expired at") {
		t.Errorf("check of the expired channel: %s", chk[1])
	}
	res := r.expect(regexp.MustCompile(`KEEL-UPDATE expired rc=(\d+) ([^\r\n]*)\r*\n`))
	if res[1] != "2" || !strings.Contains(res[2], "no update (expired)") {
		t.Errorf("apply from the expired channel: %s", res[0])
	}
	r.expect(reTestPowerOff)
	if err := r.r.Wait(); err != nil {
		t.Fatal(err)
	}

	// Power-on 2: the fresh copy: 2.0 into b, reboot, b's trial commits.
	r = powerOnDebian(t, vm, 8*bootTimeout)
	r.booted("a", "normal")
	chk = r.expect(regexp.MustCompile(`KEEL-UPDATE-CHECK fresh ([^\r\n]*)\r*\n`))
	if !regexp.MustCompile(`"reason":\s*"install"`).MatchString(chk[1]) {
		t.Errorf("check of the fresh channel: %s", chk[1])
	}
	res = r.expect(regexp.MustCompile(`KEEL-UPDATE fresh rc=(\d+) ([^\r\n]*)\r*\n`))
	if res[1] != "0" || !strings.Contains(res[2], "installed version 2.0") {
		t.Fatalf("apply from the fresh channel: %s", res[0])
	}
	r.expect(reTestReboot)
	r.booted("b", "trial")
	if s := r.status(); deref(s.Active) != "b" || s.Slots["b"].Version != "2.0" {
		t.Errorf("status after b's trial: %s", s.Raw)
	}
	r.expect(reTestPowerOff)
	if err := r.r.Wait(); err != nil {
		t.Fatal(err)
	}
}
