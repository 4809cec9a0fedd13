package cli

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelboot/keel/format/bundle/bundletest"
	"github.com/keelboot/keel/update/channel"
	"github.com/keelboot/keel/update/source/sourcetest"
)

// channelFixture: the update fixture's bundles, a channel made with keel
// channel in repo (keys in keys), served by nginx on 127.0.0.1 at url.
type channelFixture struct {
	*updateFixture
	repo, keys, url string
}

func newChannel(t *testing.T, initArgs ...string) *channelFixture {
	f := &channelFixture{updateFixture: newUpdateFixture(t)}
	f.repo, f.keys = filepath.Join(f.dir, "repo"), filepath.Join(f.dir, "channel-keys")
	keel(t, append([]string{"channel", "init", "--repo", f.repo, "--keys", f.keys}, initArgs...)...).ok(t)
	f.url = sourcetest.Nginx(t, f.repo)
	return f
}

func (f *channelFixture) publish(t *testing.T, args ...string) {
	t.Helper()
	keel(t, append([]string{"channel", "publish", "--repo", f.repo, "--keys", f.keys, "--bundle-keys", f.pubFile}, args...)...).ok(t)
}

// update runs keel --image img update SUB against the channel at url
// (the device's state beside the image).
func (f *channelFixture) update(t *testing.T, img, url, sub string, args ...string) result {
	t.Helper()
	base := []string{"--image", img, "update", sub, "--channel", url, "--root", filepath.Join(f.repo, "1.root.json"),
		"--keys", f.pubFile, "--progress", "none"}
	return keel(t, append(base, args...)...)
}

func (f *channelFixture) check(t *testing.T, img, url string, args ...string) updateJSON {
	t.Helper()
	r := f.update(t, img, url, "check", append([]string{"--json"}, args...)...).ok(t)
	var out updateJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.stdout)
	}
	return out
}

// TestUpdateApply: a device (a disk image running 1.0) finds 2.0 in a
// channel nginx serves, installs it from the full bundle (fetching only
// what it lacks) and arms the trial; during the trial the next check says
// busy.
func TestUpdateApply(t *testing.T) {
	f := newChannel(t)
	img := imageWithRecord(t, f.updateFixture)
	d := f.check(t, img, f.url)
	if d.Reason != channel.ReasonBoard {
		t.Fatalf("an empty channel: %+v", d)
	}
	f.publish(t, f.b2)
	d = f.check(t, img, f.url)
	if d.Reason != channel.ReasonInstall || d.Fetch.Path != bundletest.Board+"/2.0.bundle" || !strings.HasPrefix(d.URL, f.url+"/targets/") ||
		d.Device.Version != "1.0" || d.Device.ID == "" {
		t.Fatalf("check: %+v", d)
	}
	r := f.update(t, img, f.url, "apply", "--json").ok(t)
	var res installResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Slot != "b" || res.Version != "2.0" || res.Trial != 3 || res.Blocks.Fetched > 4 {
		t.Fatalf("apply --json: %v %s", err, r.stdout)
	}
	if !strings.Contains(r.stdout, `"reason": "install"`) {
		t.Errorf("apply --json does not carry the decision: %s", r.stdout)
	}
	if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("slot b does not hold version 2")
	}
	if rec := imageRecord(t, img); rec.Trial != "b" {
		t.Errorf("no trial: %+v", rec)
	}
	r = f.update(t, img, f.url, "apply").ok(t)
	if !strings.Contains(r.stdout, "no update (busy)") || !strings.Contains(r.stdout, "on trial") {
		t.Errorf("apply during the trial: %s", r.stdout)
	}
	// A copy of the channel in a folder (a USB stick) works the same.
	img2 := imageWithRecord(t, f.updateFixture)
	r = f.update(t, img2, f.repo, "apply").ok(t)
	if !strings.Contains(r.stdout, "update: install version 2.0") || !strings.Contains(r.stdout, "slot b is on trial") {
		t.Errorf("apply from a folder: %s", r.stdout)
	}
}

// TestUpdateRollout: at 0% no device takes a release; publishing the same
// bundle at 100% makes every device take it.
func TestUpdateRollout(t *testing.T) {
	f := newChannel(t)
	img := imageWithRecord(t, f.updateFixture)
	f.publish(t, "--rollout", "0", f.b2)
	r := f.update(t, img, f.url, "apply").ok(t)
	if !strings.Contains(r.stdout, "no update (not-in-rollout)") || !strings.Contains(r.stdout, "rolled out to 0%") {
		t.Fatalf("0%%: %s", r.stdout)
	}
	if m, _ := imageSlot(t, img, "b", f.v2); m != nil {
		t.Fatal("slot b was written at 0%")
	}
	f.publish(t, "--rollout", "100", f.b2)
	// Outside the maintenance window: nothing, exit 0.
	later := time.Now().Add(2 * time.Hour)
	window := later.Format("15:04") + "-" + later.Add(time.Hour).Format("15:04")
	r = f.update(t, img, f.url, "apply", "--window", window).ok(t)
	if !strings.Contains(r.stdout, "no update (outside-window)") || !strings.Contains(r.stdout, window) {
		t.Fatalf("outside %s: %s", window, r.stdout)
	}
	f.update(t, img, f.url, "apply", "--window", "25:00-01:00").fails(t, ExitUsage, "not a time of day")
	now := time.Now()
	window = now.Add(-time.Hour).Format("15:04") + "-" + now.Add(time.Hour).Format("15:04")
	r = f.update(t, img, f.url, "apply", "--window", window, "--random-delay", "10ms").ok(t)
	if !strings.Contains(r.stderr, "(--random-delay 10ms)") {
		t.Errorf("no delay said: %s", r.stderr)
	}
	if m, ok := imageSlot(t, img, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("slot b does not hold version 2 at 100%")
	}
}

// TestUpdateFreezeAndReplay: a server that keeps serving a timestamp past
// its expiry is refused naming the expiry, nothing installed; one that
// serves an older timestamp than the device trusts is refused as a replay.
func TestUpdateFreezeAndReplay(t *testing.T) {
	f := newChannel(t)
	img := imageWithRecord(t, f.updateFixture)
	f.publish(t, "--rollout", "0", "--expires", "timestamp=2s", f.b2)
	f.check(t, img, f.url)
	old, _ := os.ReadFile(filepath.Join(f.repo, "timestamp.json"))
	f.publish(t, "--rollout", "100", "--expires", "timestamp=2s", f.b2)
	time.Sleep(2500 * time.Millisecond)
	r := f.update(t, img, f.url, "apply")
	r.fails(t, ExitStorage, "its timestamp metadata expired at")
	if !strings.Contains(r.stdout, "no update (expired)") {
		t.Errorf("stdout: %s", r.stdout)
	}
	if m, _ := imageSlot(t, img, "b", f.v2); m != nil {
		t.Fatal("slot b was written from an expired channel")
	}
	keel(t, "channel", "refresh", "--repo", f.repo, "--keys", f.keys).ok(t)
	if d := f.check(t, img, f.url); d.Reason != channel.ReasonInstall {
		t.Fatalf("after keel channel refresh: %+v", d)
	}
	os.WriteFile(filepath.Join(f.repo, "timestamp.json"), old, 0o644)
	f.update(t, img, f.url, "check").fails(t, ExitStorage, "older metadata than this device already trusts")
}

// TestUpdateBundleMismatch: a target file that is not what the channel's
// signed metadata says (a validly signed bundle of another version put in
// its place) is refused before anything is written.
func TestUpdateBundleMismatch(t *testing.T) {
	f := newChannel(t)
	img := imageWithRecord(t, f.updateFixture)
	f.publish(t, f.b2)
	d := f.check(t, img, f.url)
	local := filepath.Join(f.repo, strings.TrimPrefix(d.URL, f.url+"/"))
	b1, _ := os.ReadFile(f.b1)
	b2, _ := os.ReadFile(local)
	for name, b := range map[string][]byte{"another bundle": b1, "the same size": append(b1, make([]byte, len(b2)-len(b1))...)} {
		if len(b) != len(b2) && name == "the same size" {
			t.Fatalf("sizes %d %d", len(b), len(b2))
		}
		os.WriteFile(local, b, 0o644)
		r := f.update(t, img, f.url, "apply")
		r.fails(t, ExitStorage, "does not match the channel's metadata")
		if rec := imageRecord(t, img); rec.Installing != "" || rec.Trial != "" {
			t.Errorf("%s: the record changed: %+v", name, rec)
		}
		if m, _ := imageSlot(t, img, "b", f.v2); m != nil {
			t.Fatalf("%s: slot b was written", name)
		}
	}
}

// TestUpdateKeyRotation: after the targets and root keys rotate (the root
// keys kept offline), a device that trusted only the first root follows
// the chain of roots and installs.
func TestUpdateKeyRotation(t *testing.T) {
	offline := filepath.Join(t.TempDir(), "offline")
	f := newChannel(t, "--root-keys", offline)
	img := imageWithRecord(t, f.updateFixture)
	f.publish(t, "--rollout", "0", f.b2)
	f.check(t, img, f.url)
	keel(t, "channel", "rotate", "--repo", f.repo, "--keys", f.keys, "targets").fails(t, ExitStorage, "root role's keys")
	for _, role := range []string{"targets", "root"} {
		keel(t, "channel", "rotate", "--repo", f.repo, "--keys", f.keys, "--root-keys", offline, role).ok(t)
	}
	f.publish(t, "--rollout", "100", f.b2)
	var st channel.Status
	if err := json.Unmarshal([]byte(keel(t, "channel", "status", "--repo", f.repo, "--keys", f.keys, "--json").ok(t).stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Roles[0].Role != "root" || st.Roles[0].Version != 3 || st.Roles[0].KeysHere != 0 || st.Roles[1].KeysHere != 1 || len(st.Targets) != 1 {
		t.Errorf("status: %+v", st)
	}
	if txt := keel(t, "channel", "status", "--repo", f.repo).ok(t).stdout; !strings.Contains(txt, "rollout 100%") {
		t.Errorf("status: %s", txt)
	}
	f.update(t, img, f.url, "apply").ok(t)
	// A device that never checked, with only root 1.
	img2 := imageWithRecord(t, f.updateFixture)
	f.update(t, img2, f.url, "apply").ok(t)
	if m, ok := imageSlot(t, img2, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("the device that trusted root 1 did not install 2.0")
	}
}

// TestUpdateStaticDelta: a device running the delta's base installs from
// the static delta (a few blocks); one running another version from the
// full bundle (adaptive: only what it lacks).
func TestUpdateStaticDelta(t *testing.T) {
	f := newChannel(t)
	delta := filepath.Join(f.dir, "v1-to-v2.bundle")
	keel(t, "bundle", "delta", "--from", f.b1, f.b2, "-o", delta, "--key", f.keyFile).ok(t)
	f.publish(t, "--delta", delta, f.b2)
	img := imageWithRecord(t, f.updateFixture)
	d := f.check(t, img, f.url)
	if d.Fetch == nil || d.Fetch.Kind != channel.KindDelta || !strings.Contains(d.URL, "2.0-from-1.0.bundle") {
		t.Fatalf("running 1.0: %+v", d)
	}
	r := f.update(t, img, f.url, "apply", "--json").ok(t)
	var res installResult
	json.Unmarshal([]byte(r.stdout), &res)
	st, _ := os.Stat(delta)
	if res.Version != "2.0" || res.BundleSize != st.Size() {
		t.Errorf("not installed from the delta: %s", r.stdout)
	}
	// Running 1.5: the delta does not apply, the full bundle does.
	v15 := bundletest.Next(t, rand.New(rand.NewSource(15)), f.v1, 8, false, "1.5", f.key)
	img2 := filepath.Join(t.TempDir(), "disk.img")
	testDisk(t, img2, v15, true)
	keel(t, "--image", img2, "init", "--active", "a").ok(t)
	d = f.check(t, img2, f.url)
	if d.Fetch == nil || d.Fetch.Kind != channel.KindBundle || !strings.Contains(d.Text, "full bundle") {
		t.Fatalf("running 1.5: %+v", d)
	}
	f.update(t, img2, f.url, "apply", "--reboot").fails(t, ExitUsage, "would restart this host")
	marker := filepath.Join(t.TempDir(), "rebooted")
	f.update(t, img2, f.url, "apply", "--reboot", "--reboot-command", "touch "+marker).ok(t)
	if m, ok := imageSlot(t, img2, "b", f.v2); !bytes.Equal(m, f.v2.Manifest) || !ok {
		t.Error("running 1.5: slot b does not hold version 2")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("--reboot-command did not run: %v", err)
	}
}
