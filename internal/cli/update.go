package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/keelboot/keel/bootenv"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/update"
	"github.com/keelboot/keel/update/channel"
	"github.com/keelboot/keel/update/source"
)

const updateUsage = `usage: keel update check [--json] [flags]
       keel update apply [--reboot] [flags]
       keel --image DISK.img update check|apply --channel URL|DIR --root ROOT.json --keys TRUSTED [flags]

Checks the device's update channel (keel channel help) as The Update
Framework prescribes: a root chain from the root.json the image carries,
then timestamp, snapshot and targets, each signed by its threshold of keys,
never older than what the device already trusts (kept in --state), and not
expired: a server that keeps serving old metadata (a frozen mirror) is
refused, naming the expiry. Then it decides: the newest release for this
board, newer than the running version, at or above the anti-rollback
counter, whose rollout share includes this device (decided from the device
id and the release: the same device stays in as the share grows).

check says what apply would install and why, or why not: up-to-date,
not-in-rollout, below-floor, wrong-board, busy (a trial or an install
runs), outside-window (apply), expired or channel-refused (exit 2). apply installs it as keel
install does (one install at a time; the trial armed): from the channel's
static delta when it has one for the running version, else from the full
bundle, fetching only the blocks the device lacks. Before anything is
written the bundle's size, header digest, board, version and security
version must match the channel's signed metadata.

  --channel URL|DIR    the channel: an http(s):// URL, or a folder (a copy
                       on a USB stick) (default: ` + layout.ChannelURLPath + `)
  --root FILE          the channel's initial root.json (default:
                       ` + layout.ChannelRootPath + `, in the verified root)
  --state DIR          the trusted metadata kept between checks (default:
                       ` + layout.ChannelStateDir + `; with --image:
                       DISK.img.keel-channel beside the image)
  --device-id ID       the id the rollout share is decided from (default:
                       ` + layout.MachineIDPath + `; with --image: the image's
                       GPT disk GUID)
  --window HH:MM-HH:MM (apply) install only inside this daily maintenance
                       window, local time (22:00-04:00 runs past midnight);
                       outside it: outside-window, exit 0
  --random-delay D     wait a random time up to D (30m) before the check, so
                       that a fleet does not call at once
  --json               print the decision (apply: the install's result with
                       the decision) as JSON
  --reboot             (apply) reboot when the install is done
  --reboot-command CMD (apply, with --reboot) run CMD (sh -c) to reboot, e.g.
                       'systemctl --no-block reboot' under systemd, instead
                       of rebooting at once
  --keys, --ca, --header, --progress, --wait, --tries, --no-try, --timeout,
  --min-rate, --min-rate-window, --board: as keel install's
`

// updateJSON is `keel update check --json` (and apply's "channel").
type updateJSON struct {
	channel.Decision
	// Error is why the channel was refused or the device is busy.
	Error string `json:"error,omitempty"`
	// URL is where the chosen file is fetched from.
	URL     string               `json:"url,omitempty"`
	Device  channel.Device       `json:"device"`
	Channel string               `json:"channel"`
	Roles   []channel.RoleStatus `json:"roles,omitempty"`
	Skipped []string             `json:"skipped_targets,omitempty"`
}

type updateFlags struct {
	installFlags
	channel, root, state, deviceID string
	rebootCommand, window          string
	randomDelay                    time.Duration
}

// updateCmd runs `keel update check|apply`.
func (c *command) updateCmd(args []string) error {
	if len(args) == 0 || args[0] == "help" || isHelpArg(args[0]) {
		fmt.Fprint(c.stderr, updateUsage)
		if len(args) == 0 {
			return usagef("update: no subcommand given (want: check, apply)")
		}
		return flag.ErrHelp
	}
	sub := args[0]
	if sub != "check" && sub != "apply" {
		fmt.Fprint(c.stderr, updateUsage)
		return usagef("update: unknown subcommand %q (want: check, apply)", sub)
	}
	var f updateFlags
	fs, err := c.flags("update "+sub, args[1:], func(fs *flag.FlagSet) {
		f.define(fs)
		fs.StringVar(&f.channel, "channel", "", "the channel's URL or folder")
		fs.StringVar(&f.root, "root", "", "the channel's initial root.json")
		fs.StringVar(&f.state, "state", "", "the trusted metadata's folder")
		fs.StringVar(&f.deviceID, "device-id", "", "the device's id for the rollout")
		fs.StringVar(&f.rebootCommand, "reboot-command", "", "with --reboot: run this (sh -c) instead of rebooting at once")
		fs.StringVar(&f.window, "window", "", "apply only within HH:MM-HH:MM, local time")
		fs.DurationVar(&f.randomDelay, "random-delay", 0, "wait a random time up to this before the check")
		fs.Usage = func() { fmt.Fprint(c.stderr, updateUsage) }
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("update %s takes no arguments, got %q", sub, fs.Args())
	}
	if err := c.checkInstallFlags("update "+sub, &f.installFlags); err != nil {
		return err
	}
	cl, err := c.channelClient(&f)
	if err != nil {
		return err
	}
	if f.reboot && c.g.image != "" && f.rebootCommand == "" {
		return usagef("update %s --image: --reboot would restart this host, not the image's device; leave it out (or give --reboot-command)", sub)
	}
	if f.rebootCommand != "" {
		if !f.reboot {
			return usagef("update %s: --reboot-command goes with --reboot", sub)
		}
		cmd := f.rebootCommand
		c.deps.Reboot = func() error {
			out, err := exec.CommandContext(c.ctx, "/bin/sh", "-c", cmd).CombinedOutput()
			if err != nil {
				return fmt.Errorf("--reboot-command %q: %w: %s", cmd, err, out)
			}
			return nil
		}
	}
	if f.window != "" {
		w, err := channel.ParseWindow(f.window)
		if err != nil {
			return usagef("update %s: --window: %v", sub, err)
		}
		if now := time.Now(); sub == "apply" && !w.Contains(now) {
			c.printUpdate(f, updateJSON{Channel: f.channel, Decision: channel.Decision{Reason: channel.ReasonWindow,
				Text: fmt.Sprintf("it is %s, outside the maintenance window %s (local time)", now.Format("15:04"), w)}})
			return nil
		}
	}
	if f.randomDelay < 0 {
		return usagef("update %s: --random-delay %v: not negative", sub, f.randomDelay)
	}
	if f.randomDelay > 0 {
		d := time.Duration(rand.Int64N(int64(f.randomDelay)))
		fmt.Fprintf(c.stderr, "keel: waiting %v before the check (--random-delay %v)\n", d.Round(time.Second), f.randomDelay)
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-time.After(d):
		}
	}
	defer c.limitInstall(f.limits)()
	var lock *update.Lock
	if sub == "apply" {
		if lock, err = c.lockFor(f.installFlags, "channel "+f.channel); err != nil {
			return c.busy(f, err)
		}
		defer lock.Release()
	}
	p, err := c.plan(f.installFlags)
	if err != nil {
		return c.busy(f, err)
	}
	defer p.Close()
	out := updateJSON{Channel: f.channel, Device: channel.Device{Board: p.Board.Name, Floor: p.Counter, ID: f.deviceID}}
	if p.Running != nil {
		out.Device.Version, out.Device.SecurityVersion = p.Running.Version, p.Running.SecurityVersion
	}
	if out.Device.ID == "" {
		if out.Device.ID, err = c.deviceID(p); err != nil {
			return err
		}
	}
	ch, err := cl.Refresh(c.ctx)
	if err != nil {
		out.Reason, out.Text, out.Error = channel.ReasonRefused, "the channel was refused: nothing is installed", err.Error()
		if errors.Is(err, channel.ErrExpired) {
			out.Reason = channel.ReasonExpired
			out.Text = "the channel's metadata expired: nothing is installed"
		}
		c.printUpdate(f, out)
		return err
	}
	out.Roles, out.Skipped = ch.Roles, ch.Skipped
	out.Decision = channel.Decide(out.Device, ch.Targets)
	if out.Fetch != nil {
		out.URL = ch.Location(*out.Fetch)
	}
	if sub == "check" || out.Reason != channel.ReasonInstall {
		c.printUpdate(f, out)
		return nil
	}
	if !f.asJSON {
		fmt.Fprintf(c.stdout, "update: %s\n", out.Text)
	}
	fetch := *out.Fetch
	guard := func(src source.Source) (source.Source, func(*bundle.Bundle) error) { return channel.Pin(src, fetch) }
	return c.installFrom(f.installFlags, lock, p, out.URL, guard, out)
}

// busy turns a refusal to plan an install (a trial runs, an install or
// recovery is under way) into a decision: nothing to do now, exit 0.
func (c *command) busy(f updateFlags, err error) error {
	if !errors.Is(err, bootenv.ErrRefused) { // a trial, a recovery, another install (update.TakeLock)
		return err
	}
	c.printUpdate(f, updateJSON{Channel: f.channel, Decision: channel.Decision{Reason: channel.ReasonBusy,
		Text: "not now: " + err.Error()}})
	return nil
}

func (c *command) printUpdate(f updateFlags, out updateJSON) {
	if f.asJSON {
		printJSON(c.stdout, out)
		return
	}
	verb := "no update"
	if out.Reason == channel.ReasonInstall {
		verb = "update"
	}
	fmt.Fprintf(c.stdout, "%s (%s): %s\n", verb, out.Reason, out.Text)
	if out.URL != "" {
		fmt.Fprintf(c.stdout, "from: %s\n", update.RedactSource(out.URL))
	}
	for _, s := range out.Skipped {
		fmt.Fprintf(c.stdout, "skipped: %s\n", printable(s))
	}
}

// channelClient is the channel from the flags, or from the slot's root.
func (c *command) channelClient(f *updateFlags) (*channel.Client, error) {
	offline := c.g.image != ""
	if f.channel == "" {
		if offline {
			return nil, usagef("update --image: --channel URL|DIR required (the image's own is inside its root)")
		}
		b, err := readSmall(layout.ChannelURLPath)
		if err != nil {
			return nil, usagef("update: no channel: %v; give --channel URL|DIR, or build the image with one (keel image build)", err)
		}
		f.channel = strings.TrimSpace(string(b))
	}
	if f.root == "" {
		if offline {
			return nil, usagef("update --image: --root ROOT.json required (the channel's initial root)")
		}
		f.root = layout.ChannelRootPath
	}
	root, err := readSmall(f.root)
	if err != nil {
		return nil, usagef("update: the channel's initial root: %v", err)
	}
	if f.state == "" {
		f.state = layout.ChannelStateDir
		if offline {
			f.state = c.g.image + ".keel-channel"
		}
	}
	return &channel.Client{URL: f.channel, Root: root, State: f.state, CAFile: f.ca}, nil
}

// readSmall reads a configuration file of at most 1 MiB.
func readSmall(name string) ([]byte, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("%s: more than 1 MiB", name)
	}
	return b, nil
}

// deviceID is the device's stable id: the OS's machine-id on a device,
// the disk's GPT GUID in an image.
func (c *command) deviceID(p *update.Plan) (string, error) {
	if p.DiskID != "" {
		return p.DiskID, nil
	}
	b, err := readSmall(layout.MachineIDPath)
	if err != nil || strings.TrimSpace(string(b)) == "" {
		if err == nil {
			err = fs.ErrNotExist
		}
		return "", usagef("update: no device id for the rollout (%s: %v): give --device-id", layout.MachineIDPath, err)
	}
	return strings.TrimSpace(string(b)), nil
}
