package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// debianPackage names the Debian package that ships an external tool, for
// error messages that say how to get a missing tool.
func debianPackage(tool string) string {
	switch tool {
	case "objcopy", "objdump":
		return "binutils"
	case "mkfs.vfat", "fsck.vfat":
		return "dosfstools"
	case "mmd", "mcopy", "mdir":
		return "mtools"
	case "mkfs.erofs", "fsck.erofs":
		return "erofs-utils"
	case "mkfs.ext4", "e2fsck":
		return "e2fsprogs"
	case "sgdisk":
		return "gdisk"
	case "mkimage", "dumpimage":
		return "u-boot-tools"
	}
	return ""
}

// sourceDateEpoch is the time stamped on everything the builder writes where
// a tool would otherwise use the current time: 1980-01-01 00:00:00 UTC, the
// earliest time FAT can store. Fixed times keep images reproducible.
const sourceDateEpoch = 315532800

// lookTool finds a tool in PATH (and in /sbin and /usr/sbin, which are not
// in every user's PATH on Debian). The error names the Debian package.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	pkg := debianPackage(name)
	if pkg == "" {
		return "", fmt.Errorf("image: %s not found in PATH: %w", name, exec.ErrNotFound)
	}
	return "", fmt.Errorf("image: %s not found in PATH: install the Debian package %s (scripts/install-deps.sh does): %w",
		name, pkg, exec.ErrNotFound)
}

// run runs a tool with a fixed environment (C locale, SOURCE_DATE_EPOCH,
// mtools' geometry check off) and returns its standard output. On failure
// the error holds the command line and what the tool printed.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path, err := lookTool(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(),
		"LC_ALL=C",
		fmt.Sprintf("SOURCE_DATE_EPOCH=%d", sourceDateEpoch),
		fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", sourceDateEpoch),
		"MTOOLS_SKIP_CHECK=1",
		"MTOOLSRC=/dev/null", // ignore the user's ~/.mtoolsrc drive definitions
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("image: %s: %w", name, ctxErr)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && msg != "" {
			return nil, fmt.Errorf("image: %s failed (%w): %s\n\tcommand: %s", name, err, msg, cmdline(path, args))
		}
		return nil, fmt.Errorf("image: %s failed: %w\n\tcommand: %s", name, err, cmdline(path, args))
	}
	return stdout.Bytes(), nil
}

func cmdline(path string, args []string) string {
	q := make([]string, 0, len(args)+1)
	for _, a := range append([]string{path}, args...) {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}
