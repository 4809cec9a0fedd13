package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/keelboot/keel/boards"
	"github.com/keelboot/keel/builder/image"
	"github.com/keelboot/keel/format/bundle"
	"github.com/keelboot/keel/manifest"
	"github.com/keelboot/keel/update/channel"
	"github.com/keelboot/keel/update/source"
)

const bundleUsage = `usage: keel bundle build|info|verify|delta

  keel bundle build --board B --spec SPEC.json --slot S -o OUT.bundle
      build slot S of an image spec (keel image help) into an update bundle,
      signed by the spec's signing_keys
  keel bundle build --from-image DISK.img --slot S --key K.key -o OUT.bundle
      the bundle of slot S of a built disk image, its header signed by K
  keel bundle info [--keys TRUSTED] [--json] BUNDLE
      what a bundle holds (signature checked with --keys)
  keel bundle verify --keys TRUSTED [--board B] BUNDLE
      check a whole bundle (file, -, or http(s):// URL); writes nothing
  keel bundle delta --from OLD.bundle NEW.bundle -o DELTA.bundle --key K.key
      a static delta: only the blocks of NEW that OLD lacks (offline media)

A bundle carries one slot: a signed header (board, version, security
version, every part's size and SHA-256), the slot's signed manifest, its
kernel and initrd, the root's dm-verity tree and the root's data blocks,
in that order. keel install checks every block against the tree.
`

// bundleCmd runs `keel bundle ...`.
func (c *command) bundleCmd(args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(c.stderr, bundleUsage)
		if len(args) == 0 {
			return usagef("bundle: no subcommand given (want: build, info, verify, delta)")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "build":
		return c.bundleBuild(args[1:])
	case "info":
		return c.bundleInfo(args[1:])
	case "verify":
		return c.bundleVerify(args[1:])
	case "delta":
		return c.bundleDelta(args[1:])
	}
	fmt.Fprint(c.stderr, bundleUsage)
	return usagef("bundle: unknown subcommand %q (want: build, info, verify, delta)", args[0])
}

func (c *command) bundleBuild(args []string) error {
	var board, spec, slot, out, fromImage string
	var keyFiles listFlag
	format := bundle.FormatChunked
	fs, err := c.flags("bundle build", args, func(fs *flag.FlagSet) {
		fs.IntVar(&format, "format", bundle.FormatChunked, "bundle format: 2 (compressed) or 1 (uncompressed, for devices whose keel reads only format 1)")
		fs.StringVar(&board, "board", "", "board name (with --spec)")
		fs.StringVar(&spec, "spec", "", "image spec JSON (keel image help)")
		fs.StringVar(&slot, "slot", "", "the slot to bundle")
		fs.StringVar(&out, "o", "", "bundle file to write")
		fs.StringVar(&out, "out", "", "bundle file to write")
		fs.StringVar(&fromImage, "from-image", "", "a built disk image to take the slot from")
		fs.Var(&keyFiles, "key", "private key signing the header (with --from-image); may be repeated")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("bundle build takes no arguments, got %q", fs.Args())
	}
	if slot == "" || out == "" {
		return usagef("bundle build: --slot and -o required (keel bundle help)")
	}
	if (spec == "") == (fromImage == "") {
		return usagef("bundle build: give --spec SPEC.json (with --board) or --from-image DISK.img")
	}
	if format != bundle.FormatPlain && format != bundle.FormatChunked {
		return usagef("bundle build: --format %d: want 2 (compressed) or 1 (uncompressed)", format)
	}
	var write func(w io.Writer) (*bundle.Header, error)
	if spec != "" {
		if board == "" {
			return usagef("bundle build: --board required with --spec")
		}
		b, err := boards.Get(board)
		if err != nil {
			return usagef("bundle build: %v", err)
		}
		s, err := image.ReadSpec(spec)
		if err != nil {
			return usagef("%v", err)
		}
		s.Board = b
		write = func(w io.Writer) (*bundle.Header, error) { return image.BuildBundleFormat(c.ctx, s, slot, w, format) }
	} else {
		keys, err := readPrivateKeys(keyFiles)
		if err != nil {
			return err
		}
		write = func(w io.Writer) (*bundle.Header, error) {
			return image.BundleFromImageFormat(fromImage, slot, keys, w, format)
		}
	}
	h, err := writeBundle(out, write)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: version %s (security version %d) for board %s, %s\n",
		out, h.Version, h.SecurityVersion, h.Compatible, sizeText(h.Size()))
	return err
}

// writeBundle writes a bundle file atomically (writeAtomicFunc).
func writeBundle(path string, write func(io.Writer) (*bundle.Header, error)) (*bundle.Header, error) {
	var h *bundle.Header
	err := writeAtomicFunc(path, 0o644, func(w io.Writer) error {
		var err error
		h, err = write(w)
		return err
	})
	return h, err
}

func readPrivateKeys(files []string) ([]manifest.PrivateKey, error) {
	if len(files) == 0 {
		return nil, usagef("no signing key given: --key NAME.key (keel keygen makes one)")
	}
	var keys []manifest.PrivateKey
	for _, p := range files {
		k, err := manifest.ReadPrivateKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func readTrusted(files []string) ([]manifest.PublicKey, error) {
	var trusted []manifest.PublicKey
	for _, p := range files {
		k, err := manifest.ReadPublicKeys(p)
		if err != nil {
			return nil, err
		}
		trusted = append(trusted, k...)
	}
	return trusted, nil
}

// openSource opens a bundle named on the command line: a file, a block
// device, - (standard input) or an http(s):// URL.
func (c *command) openSource(spec string, o source.HTTPOptions) (source.Source, error) {
	return source.Open(c.ctx, spec, c.deps.Stdin, o)
}

// bundleInfoJSON is `keel bundle info --json`.
type bundleInfoJSON struct {
	Header *bundle.Header `json:"header"`
	// Verified: the header's and manifest's signatures were checked
	// against --keys; KeyID is the key that signed the header.
	Verified bool               `json:"verified"`
	KeyID    string             `json:"key_id,omitempty"`
	Manifest *manifest.Manifest `json:"manifest,omitempty"`
}

func (c *command) bundleInfo(args []string) error {
	var keyFiles listFlag
	var asJSON bool
	fs, err := c.flags("bundle info", args, func(fs *flag.FlagSet) {
		fs.Var(&keyFiles, "keys", "trusted public keys: check the signatures")
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: keel bundle info [--keys TRUSTED] [--json] BUNDLE")
	}
	src, err := c.openSource(fs.Arg(0), source.HTTPOptions{})
	if err != nil {
		return err
	}
	defer src.Close()
	info := bundleInfoJSON{}
	if len(keyFiles) > 0 {
		trusted, err := readTrusted(keyFiles)
		if err != nil {
			return err
		}
		b, err := bundle.Open(c.ctx, src, trusted, manifest.AnyBoard)
		if err != nil {
			return err
		}
		info = bundleInfoJSON{Header: b.Header, Verified: true, KeyID: b.KeyID, Manifest: b.Manifest}
	} else if info.Header, err = readHeaderUnverified(c.ctx, src); err != nil {
		return err
	}
	if asJSON {
		return printJSON(c.stdout, info)
	}
	// Without --keys nothing vouches for the header's text.
	h := info.Header
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "board:\t%s\n", printable(h.Compatible))
	fmt.Fprintf(w, "version:\t%s\n", printable(h.Version))
	fmt.Fprintf(w, "security version:\t%d\n", h.SecurityVersion)
	fmt.Fprintf(w, "size:\t%s\n", sizeText(h.Size()))
	if c := h.Chunks; c != nil {
		fmt.Fprintf(w, "storage:\tformat %d, %s chunks of %d KiB, %s uncompressed\n", h.Format, printable(c.Compression), c.ChunkSize>>10, sizeText(h.LayoutSize()))
	} else {
		fmt.Fprintf(w, "storage:\tformat %d, uncompressed\n", h.Format)
	}
	fmt.Fprintf(w, "root:\t%d blocks of 4 KiB (%s)\n", h.DataBlocks, sizeText(int64(h.DataBlocks)*bundle.Align))
	if d := h.Delta; d != nil {
		fmt.Fprintf(w, "delta:\tfrom version %s (root hash %.16s…): %d of %d blocks carried\n", printable(d.From), printable(d.FromRootHash), d.Blocks, h.DataBlocks)
	} else {
		fmt.Fprintf(w, "delta:\tno (a full bundle)\n")
	}
	if info.Verified {
		fmt.Fprintf(w, "signature:\tverified, key %s\n", info.KeyID)
	} else {
		fmt.Fprintf(w, "signature:\tNOT checked (give --keys TRUSTED)\n")
	}
	w.Flush()
	fmt.Fprintln(c.stdout, "parts:")
	w = tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, p := range h.Parts {
		fmt.Fprintf(w, "  %s\tat %d\t%d bytes\tsha256 %.16s…\n", printable(p.Name), p.Offset, p.Size, printable(p.SHA256))
	}
	return w.Flush()
}

// readHeaderUnverified reads a bundle's header without checking its
// signature (keel bundle info without keys).
func readHeaderUnverified(ctx context.Context, src source.Source) (*bundle.Header, error) {
	_, h, err := channel.ReadHeader(ctx, src)
	return h, err
}

func (c *command) bundleVerify(args []string) error {
	var keyFiles listFlag
	var board string
	fs, err := c.flags("bundle verify", args, func(fs *flag.FlagSet) {
		fs.Var(&keyFiles, "keys", "trusted public keys file; may be repeated")
		fs.StringVar(&board, "board", manifest.AnyBoard, "board the bundle must be for (default: any)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("usage: keel bundle verify --keys TRUSTED [--board B] BUNDLE")
	}
	if len(keyFiles) == 0 {
		return usagef("bundle verify: --keys TRUSTED required (a file of keel-ed25519 public key lines)")
	}
	trusted, err := readTrusted(keyFiles)
	if err != nil {
		return err
	}
	src, err := c.openSource(fs.Arg(0), source.HTTPOptions{})
	if err != nil {
		return err
	}
	defer src.Close()
	b, err := bundle.Verify(c.ctx, src, trusted, board)
	if err != nil {
		return err
	}
	h := b.Header
	kind := "full"
	if h.Delta != nil {
		kind = "delta from version " + h.Delta.From
	}
	_, err = fmt.Fprintf(c.stdout, "%s: OK: version %s (security version %d) for board %s, %s bundle of %s, signed by key %s\n",
		fs.Arg(0), h.Version, h.SecurityVersion, h.Compatible, kind, sizeText(h.Size()), b.KeyID)
	return err
}

func (c *command) bundleDelta(args []string) error {
	var from, out string
	var keyFiles, trustFiles listFlag
	format := bundle.FormatChunked
	fs, err := c.flags("bundle delta", args, func(fs *flag.FlagSet) {
		fs.StringVar(&from, "from", "", "the full bundle of the version devices run")
		fs.StringVar(&out, "o", "", "delta bundle to write")
		fs.StringVar(&out, "out", "", "delta bundle to write")
		fs.Var(&keyFiles, "key", "private key signing the delta's header; may be repeated")
		fs.Var(&trustFiles, "keys", "trusted public keys to check OLD and NEW (default: the --key keys' public keys)")
		fs.IntVar(&format, "format", bundle.FormatChunked, "bundle format: 2 (compressed) or 1 (uncompressed, for devices whose keel reads only format 1)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 || from == "" || out == "" {
		return usagef("usage: keel bundle delta --from OLD.bundle NEW.bundle -o DELTA.bundle --key K.key")
	}
	if format != bundle.FormatPlain && format != bundle.FormatChunked {
		return usagef("bundle delta: --format %d: want 2 (compressed) or 1 (uncompressed)", format)
	}
	keys, err := readPrivateKeys(keyFiles)
	if err != nil {
		return err
	}
	trusted, err := readTrusted(trustFiles)
	if err != nil {
		return err
	}
	if len(trusted) == 0 {
		for _, k := range keys {
			trusted = append(trusted, k.Public())
		}
	}
	open := func(path string) (*bundle.Bundle, *os.File, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		b, err := bundle.Open(c.ctx, source.NewReaderAt(f, st.Size(), path), trusted, manifest.AnyBoard)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if b.Header.Delta != nil {
			f.Close()
			return nil, nil, usagef("%s is itself a delta bundle: give full bundles", path)
		}
		return b, f, nil
	}
	ob, of, err := open(from)
	if err != nil {
		return err
	}
	defer of.Close()
	nb, nf, err := open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer nf.Close()
	if ob.Header.Compatible != nb.Header.Compatible {
		return usagef("bundle delta: OLD is for board %s, NEW for %s", ob.Header.Compatible, nb.Header.Compatible)
	}
	st, _ := nf.Stat()
	tree, _, err := nb.ReadTree(c.ctx, source.NewReaderAt(nf, st.Size(), fs.Arg(0)))
	if err != nil {
		return err
	}
	// What the old version holds is read from the old bundle, checked
	// block by block against its tree, which its signed manifest vouches
	// for.
	ost, _ := of.Stat()
	oldTree, _, err := ob.ReadTree(c.ctx, source.NewReaderAt(of, ost.Size(), from))
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	oldRoot, err := ob.RootReader(of)
	if err != nil {
		return err
	}
	m, err := bundle.DeltaMap(tree, oldRoot, oldTree)
	if err != nil {
		return fmt.Errorf("%s: %w", from, err)
	}
	newRoot, err := nb.RootReader(nf)
	if err != nil {
		return err
	}
	parts, err := readBundleParts(c.ctx, nf, st.Size(), nb, bundle.PartKernel, bundle.PartInitrd)
	if err != nil {
		return err
	}
	h, err := writeBundle(out, func(w io.Writer) (*bundle.Header, error) {
		return bundle.Write(w, bundle.Input{Manifest: nb.ManifestBytes, Sig: nb.Sig, Kernel: parts[0], Initrd: parts[1], Root: newRoot,
			Delta: &bundle.Delta{From: ob.Header.Version, FromRootHash: ob.Manifest.Root.Verity.RootHash}, Map: m, Plain: format == bundle.FormatPlain}, keys...)
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "wrote %s: version %s from %s, %d of %d blocks, %s (the full bundle is %s)\n",
		out, h.Version, h.Delta.From, h.Delta.Blocks, h.DataBlocks, sizeText(h.Size()), sizeText(nb.Header.Size()))
	return err
}

func readBundleParts(ctx context.Context, f *os.File, size int64, b *bundle.Bundle, names ...string) ([][]byte, error) {
	var ps []bundle.Part
	for _, n := range names {
		p, _ := b.Header.Part(n)
		ps = append(ps, p)
	}
	return bundle.ReadParts(ctx, b.View(source.NewReaderAt(f, size, f.Name())), ps...)
}

// sizeText is n bytes for people: "12.3 MiB (12897280 bytes)".
func sizeText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/(1<<20), n)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB (%d bytes)", float64(n)/(1<<10), n)
	}
	return fmt.Sprintf("%d bytes", n)
}
