package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/keelboot/keel/update/source"
)

// installLimits bound how long `keel install` may take: --timeout for the
// whole install, --min-rate over --min-rate-window for an http(s)
// download (package update/source: the stall timeout alone lets a server
// that sends a byte now and then hold an install for ever).
type installLimits struct {
	timeout       time.Duration
	minRate       int64
	minRateWindow time.Duration
}

func (l *installLimits) define(fs *flag.FlagSet) {
	fs.DurationVar(&l.timeout, "timeout", 0, "give up the install after this long (0: no limit)")
	fs.Int64Var(&l.minRate, "min-rate", source.DefaultMinRate, "fail an http(s) download slower than this many bytes/s over --min-rate-window (0: no minimum)")
	fs.DurationVar(&l.minRateWindow, "min-rate-window", source.DefaultMinRateWindow, "the window --min-rate is measured over")
}

func (l installLimits) check() error {
	switch {
	case l.timeout < 0:
		return usagef("install: --timeout %v: give a duration (2h, 30m) or 0 for no limit", l.timeout)
	case l.minRate < 0:
		return usagef("install: --min-rate %d: give bytes per second, or 0 for no minimum", l.minRate)
	case l.minRate > 0 && l.minRateWindow < time.Second:
		return usagef("install: --min-rate-window %v: give at least 1s (a link's rate is measured over minutes)", l.minRateWindow)
	}
	return nil
}

// http sets the minimum rate of an HTTP source.
func (l installLimits) http(o *source.HTTPOptions) {
	o.MinRate, o.MinRateWindow = l.minRate, l.minRateWindow
	if l.minRate == 0 {
		o.MinRate = -1 // none; 0 in HTTPOptions is the default
	}
}

// timeoutError is the cause of an install --timeout ended.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("the install took longer than --timeout %v and was stopped", e.d)
}

// limitInstall bounds c.ctx, and so everything the install does from
// here, by --timeout; the function it returns releases the timer.
func (c *command) limitInstall(l installLimits) func() {
	if l.timeout <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithTimeoutCause(c.ctx, l.timeout, &timeoutError{l.timeout})
	c.ctx = ctx
	return cancel
}

// explain says which limit ended an install, and how to change it: a
// download stopped by --timeout fails with "context deadline exceeded",
// which names neither.
func (l installLimits) explain(ctx context.Context, err error) error {
	var te *timeoutError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.As(context.Cause(ctx), &te) && !errors.As(err, &te):
		return fmt.Errorf("%w: %w", te, err)
	case errors.Is(err, source.ErrTooSlow):
		return fmt.Errorf("%w (--min-rate %d bytes/s over --min-rate-window %v: give a lower --min-rate for a slower link, 0 for no minimum)", err, l.minRate, l.minRateWindow)
	}
	return err
}

// drainSlack is how far past the bundle's end `keel install -` reads its
// standard input after a successful install: the bundle is all a writer
// like curl sends, and 1 MiB more allows for padding (dd conv=sync); a
// pipe that goes on past it is not read further.
const drainSlack = 1 << 20

// drainInput reads standard input to its end after a successful install
// from "-" (source.Drainer), at most to the bundle's size plus
// drainSlack, within --timeout and until no byte comes for
// source.DefaultStallTimeout. The installer stops reading where the last
// block it needs ends; a writer that is still writing then would get
// SIGPIPE once keel exits, and `set -o pipefail` would report a failed
// pipeline after a good install. A drain that cannot finish only warns:
// the install is done either way.
func (c *command) drainInput(src source.Source, bundleSize int64) {
	d, ok := src.(source.Drainer)
	if !ok {
		return
	}
	n, err := d.Drain(c.ctx, bundleSize+drainSlack, source.DefaultStallTimeout)
	if err != nil {
		fmt.Fprintf(c.stderr, "keel: warning: the install is done, but standard input was not read to its end (%v; %d bytes read after the install): its writer may see a broken pipe (SIGPIPE)\n", err, n)
	}
}
