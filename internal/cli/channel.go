package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelboot/keel/update/channel"
)

const channelUsage = `usage: keel channel init|publish|refresh|rotate|status

An update channel is a TUF repository (The Update Framework): static files
that any web server or CDN serves, or that a USB stick carries. Devices
check it with keel update. Its private keys are never in it: --keys names
a folder of keel keys (ROLE.key, ROLE-2.key...: root, targets, snapshot,
timestamp), --root-keys the root's when they are kept offline.

  keel channel init --repo DIR --keys KEYDIR [--root-keys DIR]
                    [--threshold ROLE=N]... [--expires ROLE=D]...
      a new channel in DIR; keys missing in KEYDIR (or --root-keys) are
      generated, N per role (default 1); DIR/root.json is what images carry
      (keel image build)
  keel channel publish --repo DIR --keys KEYDIR [--bundle-keys TRUSTED]
                    [--delta DELTA.bundle]... [--rollout PERCENT] BUNDLE
      add a bundle (and static deltas to its version, keel bundle delta) as
      targets with what a device needs before any download (board, version,
      security version, the header's digest and size, the delta's base, the
      rollout share); publishing the same bundle again changes its rollout
  keel channel refresh --repo DIR --keys KEYDIR [--expires D]
      sign a new timestamp (default: valid 1d): run it from a timer on the
      release host; devices refuse a channel whose timestamp expired
  keel channel rotate --repo DIR --keys KEYDIR [--root-keys DIR] [--threshold N] ROLE
      replace ROLE's keys (old key files move to retired/): a new root
      signed by the root keys (old and new when ROLE is root), so devices
      that trust an older root follow
  keel channel status --repo DIR [--keys KEYDIR] [--json]
      each role's version, expiry, threshold and keys; the targets

Durations: 90s, 30m, 12h, 7d. Default expiries: root 365d, targets 90d,
snapshot 7d, timestamp 1d.
`

// channelCmd runs `keel channel ...`.
func (c *command) channelCmd(args []string) error {
	if len(args) == 0 || args[0] == "help" || isHelpArg(args[0]) {
		fmt.Fprint(c.stderr, channelUsage)
		if len(args) == 0 {
			return usagef("channel: no subcommand given (want: init, publish, refresh, rotate, status)")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "init", "publish", "refresh", "rotate", "status":
		return c.channelRun(args[0], args[1:])
	}
	fmt.Fprint(c.stderr, channelUsage)
	return usagef("channel: unknown subcommand %q (want: init, publish, refresh, rotate, status)", args[0])
}

// parseDuration is a Go duration, or N days (7d).
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100*365 {
			return 0, fmt.Errorf("%q: want a number of days", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("%q: not positive", s)
	}
	return d, err
}

// roleValues reads ROLE=VALUE flags.
func roleValues(name string, list []string, parse func(string) error) (map[string]string, error) {
	out := map[string]string{}
	for _, e := range list {
		role, v, ok := strings.Cut(e, "=")
		if !ok || !validRole(role) {
			return nil, usagef("channel: %s %q: want ROLE=VALUE, ROLE one of root, targets, snapshot, timestamp", name, e)
		}
		if err := parse(v); err != nil {
			return nil, usagef("channel: %s %s: %v", name, e, err)
		}
		out[role] = v
	}
	return out, nil
}

func validRole(r string) bool {
	for _, x := range channel.Roles {
		if r == x {
			return true
		}
	}
	return false
}

func (c *command) channelRun(sub string, args []string) error {
	var repo, keys, rootKeys, bundleKeys, expire string
	var thresholds, expires, deltas listFlag
	var rollout, n int
	var asJSON bool
	fs, err := c.flags("channel "+sub, args, func(fs *flag.FlagSet) {
		fs.StringVar(&repo, "repo", "", "the channel's folder")
		fs.StringVar(&keys, "keys", "", "the folder of the channel's keys")
		switch sub {
		case "init", "rotate":
			fs.StringVar(&rootKeys, "root-keys", "", "the folder of the root keys (offline)")
		}
		switch sub {
		case "init":
			fs.Var(&thresholds, "threshold", "ROLE=N (repeat)")
			fs.Var(&expires, "expires", "ROLE=DURATION (repeat)")
		case "publish":
			fs.StringVar(&bundleKeys, "bundle-keys", "", "release keys the bundles must verify with")
			fs.Var(&deltas, "delta", "a static delta to the bundle's version (repeat)")
			fs.IntVar(&rollout, "rollout", 100, "percent of devices")
			fs.Var(&expires, "expires", "ROLE=DURATION (repeat)")
		case "refresh":
			fs.StringVar(&expire, "expires", "", "how long the timestamp is valid")
		case "rotate":
			fs.IntVar(&n, "threshold", 0, "keys of the role (default: its threshold)")
			fs.Var(&expires, "expires", "ROLE=DURATION (repeat)")
		case "status":
			fs.BoolVar(&asJSON, "json", false, "print JSON")
		}
		fs.Usage = func() { fmt.Fprint(c.stderr, channelUsage) }
	})
	if err != nil {
		return err
	}
	want := 0
	if sub == "publish" || sub == "rotate" {
		want = 1
	}
	if fs.NArg() != want {
		return usagef("channel %s: %d arguments, want %d (keel channel help)", sub, fs.NArg(), want)
	}
	if repo == "" {
		return usagef("channel %s: --repo DIR required", sub)
	}
	if keys == "" && sub != "status" {
		return usagef("channel %s: --keys KEYDIR required (the folder of the channel's keys)", sub)
	}
	r := &channel.Repo{Dir: repo, Keys: channel.Keys{Dir: keys, RootDir: rootKeys}, Expires: channel.Expiries{}}
	ex, err := roleValues("--expires", expires, func(v string) error { _, err := parseDuration(v); return err })
	if err != nil {
		return err
	}
	for role, v := range ex {
		r.Expires[role], _ = parseDuration(v)
	}
	if expire != "" {
		d, err := parseDuration(expire)
		if err != nil {
			return usagef("channel refresh: --expires %v", err)
		}
		r.Expires["timestamp"] = d
	}
	switch sub {
	case "init":
		th := channel.Thresholds{}
		tv, err := roleValues("--threshold", thresholds, func(v string) error {
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 16 {
				return fmt.Errorf("want 1..16 keys")
			}
			return nil
		})
		if err != nil {
			return err
		}
		for role, v := range tv {
			th[role], _ = strconv.Atoi(v)
		}
		if err := r.Init(th); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "channel made in %s; keys in %s", repo, keys)
		if rootKeys != "" {
			fmt.Fprintf(c.stdout, " (root keys in %s: keep them offline)", rootKeys)
		}
		fmt.Fprintf(c.stdout, "\nthe devices' initial root: %s/root.json (keel image build --channel-root)\n", repo)
		return nil
	case "publish":
		if rollout < 0 || rollout > 100 {
			return usagef("channel publish: --rollout %d: give 0..100", rollout)
		}
		p := channel.Publish{Bundle: fs.Arg(0), Deltas: deltas, Rollout: rollout}
		if bundleKeys != "" {
			if p.Trusted, err = readTrusted([]string{bundleKeys}); err != nil {
				return err
			}
		}
		out, err := r.Publish(c.ctx, p)
		if err != nil {
			return err
		}
		for _, t := range out.Targets {
			fmt.Fprintf(c.stdout, "published %s (%s, security version %d, %s, rollout %d%%)\n", t.Path, t.Kind, t.SecurityVersion, sizeText(t.Length), t.Rollout)
		}
		fmt.Fprintf(c.stdout, "targets version %d\n", out.Version)
		return nil
	case "refresh":
		if err := r.Refresh(); err != nil {
			return err
		}
		st, err := r.Status()
		if err != nil {
			return err
		}
		ts := st.Roles[len(st.Roles)-1]
		fmt.Fprintf(c.stdout, "timestamp version %d, expires %s\n", ts.Version, ts.Expires.UTC().Format(time.RFC3339))
		return nil
	case "rotate":
		if !validRole(fs.Arg(0)) {
			return usagef("channel rotate: %q: give root, targets, snapshot or timestamp", fs.Arg(0))
		}
		if err := r.Rotate(fs.Arg(0), n); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "rotated the %s keys; old key files are in retired/\n", fs.Arg(0))
		return nil
	}
	st, err := r.Status()
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(c.stdout, st)
	}
	now := time.Now()
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "role\tversion\texpires\tkeys\tthreshold\tkeys here")
	for _, rs := range st.Roles {
		left := rs.Expires.Sub(now).Round(time.Minute)
		state := "in " + left.String()
		if left <= 0 {
			state = "EXPIRED"
		}
		fmt.Fprintf(w, "%s\t%d\t%s (%s)\t%d\t%d\t%d\n", rs.Role, rs.Version, rs.Expires.UTC().Format(time.RFC3339), state, len(rs.KeyIDs), rs.Threshold, rs.KeysHere)
	}
	w.Flush()
	fmt.Fprintf(c.stdout, "targets: %d\n", len(st.Targets))
	w = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, t := range st.Targets {
		fmt.Fprintf(w, "  %s\t%s\tsecurity version %d\t%s\trollout %d%%\n", printable(t.Path), t.Kind, t.SecurityVersion, sizeText(t.Length), t.Rollout)
	}
	return w.Flush()
}
