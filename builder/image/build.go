package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelboot/keel/format/gpt"
	"github.com/keelboot/keel/format/layout"
	"github.com/keelboot/keel/format/seedimg"
	"github.com/keelboot/keel/format/slotimg"
	"github.com/keelboot/keel/format/verity"
	"github.com/keelboot/keel/manifest"
)

// Build writes the disk image for s.Board to s.Out. First it builds the
// boot archives the Spec does not give prebuilt (keel's initramfs without
// keel_initrd, a slot's initrd without initrd; package builder/bootimage,
// into the work folder) and takes the kernels from kernel folders; then:
//
//   - a GPT from the board's layout (type GUIDs and names as the layout
//     gives them, sizes in MiB as the Spec's PartitionMB sizes them, else
//     the layout's) on a disk of DiskMB MiB (SizedBoard);
//   - esp (UEFI boards): a FAT file system with keel's UKI as
//     \EFI\BOOT\BOOTX64.EFI, Authenticode-signed with the db key of
//     SecureBootKeys if given;
//   - boot (U-Boot boards): a FAT file system with keel's kernel (an
//     arm64 Image), keel's initramfs and boot.scr, the U-Boot script that
//     loads them at the board's addresses and boots them (BootScript);
//   - slot-<name>: a slot container (slotimg) with the entries kernel,
//     initrd, manifest and manifest.sig (manifest.SigEntry), the manifest
//     bound to the board (compatible = the board's name) and to its role
//     (slot) and holding the real digests of that kernel and initrd, the
//     slot's cmdline, version, security version and root file system type,
//     and manifest.sig its signatures by the SigningKeys (no manifest.sig
//     when the Spec is Unsigned); root-<name>: the root file system. Both
//     stay zero for an Empty slot;
//   - recovery: the recovery seed (package format/seedimg) when the Spec has a
//     Recovery: a slot container with kernel, initrd, manifest (role seed)
//     and manifest.sig, slot-manifest (role slot: what the reinstalled slot
//     gets as its manifest) and slot-manifest.sig, root (file system +
//     dm-verity tree, as a root-<slot> partition holds it) and data (the
//     data partition's empty file system, sparse encoded, its digest in the
//     seed's signed manifest), signed like the slots; else zero;
//   - data: an empty ext4 file system labelled "data";
//   - any other partition of the layout: zero.
//
// The image is written to a temporary file next to s.Out, which is renamed
// to s.Out only when everything is written: a failed build leaves no image
// and never a half-written one. A partition's content that does not fit
// wraps ErrTooLarge and names the partition, both sizes and the
// partition_mb entries that make it fit.
func Build(ctx context.Context, s Spec) (err error) {
	if err := s.Validate(); err != nil {
		return err
	}
	start := time.Now()
	// The GPT and the disk as the Spec sizes them; keel's archives get
	// s.Board as it is (SizedBoard).
	b, err := s.SizedBoard()
	if err != nil {
		return err
	}
	if s.Seed == "" {
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		s.Seed = hex.EncodeToString(r[:])
	}
	ids := idSource{seed: s.Seed}

	outDir := filepath.Dir(s.Out)
	work := s.WorkDir
	if work != "" {
		if err := os.MkdirAll(work, 0o755); err != nil {
			return fmt.Errorf("image: work directory: %w", err)
		}
	} else {
		work, err = os.MkdirTemp(outDir, ".keel-image-*")
		if err != nil {
			return fmt.Errorf("image: temporary directory next to %s: %w", s.Out, err)
		}
		defer os.RemoveAll(work)
	}

	diskSize := int64(b.DiskMB) << 20
	specs := make([]gpt.Spec, len(b.Layout))
	for i, p := range b.Layout {
		typ, err := gpt.ParseGUID(p.TypeID)
		if err != nil {
			return fmt.Errorf("image: board %s partition %s: %w", b.Name, p.Name, err)
		}
		specs[i] = gpt.Spec{Name: p.Name, Type: typ, Size: int64(p.SizeMB) << 20, UUID: ids.guid("partition/" + p.Name)}
	}

	f, err := os.CreateTemp(outDir, "."+filepath.Base(s.Out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	tmpName := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmpName)
		}
	}()
	if err := f.Truncate(diskSize); err != nil {
		return fmt.Errorf("image: %s: %w", tmpName, err)
	}
	table, err := gpt.CreateWith(f, diskSize, specs, gpt.Options{DiskGUID: ids.guid("disk")})
	if err != nil {
		return fmt.Errorf("image: board %s layout on a %d MiB disk: %w", b.Name, b.DiskMB, err)
	}
	bl := &builder{ctx: ctx, s: &s, ids: ids, work: work, disk: f, table: table}
	bl.logf("GPT: %d partitions on %s", len(table.Partitions), sizeOf(diskSize))

	if err := bl.bootFiles(); err != nil {
		return err
	}

	if err := bl.firmwareFiles(); err != nil {
		return err
	}
	for _, name := range b.Slots {
		if err := bl.slot(name, s.Slots[name]); err != nil {
			return err
		}
	}
	dataImg := ""
	if _, err := table.Find("data"); err == nil {
		if dataImg, err = bl.data(); err != nil {
			return err
		}
	}
	if s.Recovery != nil {
		if err := bl.recovery(*s.Recovery, dataImg); err != nil {
			return err
		}
	}

	if err := f.Sync(); err != nil {
		return fmt.Errorf("image: %s: %w", tmpName, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("image: %s: %w", tmpName, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return fmt.Errorf("image: %s: %w", tmpName, cerr)
	}
	if err := os.Rename(tmpName, s.Out); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	bl.logf("wrote %s (%s) in %.1fs", s.Out, sizeOf(diskSize), time.Since(start).Seconds())
	return nil
}

type builder struct {
	ctx   context.Context
	s     *Spec
	ids   idSource
	work  string
	disk  *os.File
	table *gpt.Table
}

func (bl *builder) logf(format string, args ...any) {
	if bl.s.Log != nil {
		fmt.Fprintf(bl.s.Log, "image: "+format+"\n", args...)
	}
}

func (bl *builder) part(name string) (gpt.Partition, error) {
	p, err := bl.table.Find(name)
	if err != nil {
		return p, fmt.Errorf("image: board %s: %w", bl.s.Board.Name, err)
	}
	return p, nil
}

// tooLarge says that what, size bytes, does not fit into the partition,
// and how the Spec gives the partition the need bytes it takes.
func (bl *builder) tooLarge(p gpt.Partition, what string, size, need int64) error {
	return fmt.Errorf("image: partition %s: %s is %s, but the partition is %s: %s, or make it smaller: %w",
		p.Name, what, mib(size), mib(p.Size()), bl.sizeHint(p.Name, need), ErrTooLarge)
}

// esp makes keel's UKI and the FAT file system holding it.
func (bl *builder) esp() error {
	t := time.Now()
	p, err := bl.part("esp")
	if err != nil {
		return err
	}
	uki := filepath.Join(bl.work, "BOOTX64.EFI")
	secs, err := UKI(bl.ctx, uki, UKIOptions{
		Stub: bl.s.Stub, Kernel: bl.s.KeelKernel, Initrd: bl.s.KeelInitrd,
		Cmdline: bl.s.KeelCmdline, OSRelease: bl.s.OSRelease,
	})
	if err != nil {
		return err
	}
	signed := ", NOT SIGNED (no_secure_boot: boots only with Secure Boot off; development only)"
	if bl.s.SecureBootKeys != "" {
		if signed, err = signUKI(uki, bl.s.SecureBootKeys); err != nil {
			return err
		}
		signed = ", " + signed
	}
	st, err := os.Stat(uki)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	// A FAT file system needs room for its tables next to the file: a
	// 16th of the partition.
	if st.Size()+p.Size()/16 > p.Size() {
		return bl.tooLarge(p, "keel's UKI ("+bl.s.KeelKernel+" + "+bl.s.KeelInitrd+") with room for the FAT", st.Size()+p.Size()/16, st.Size()*16/15+1)
	}
	stamp := time.Unix(sourceDateEpoch, 0)
	if err := os.Chtimes(uki, stamp, stamp); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	img := filepath.Join(bl.work, "esp.img")
	os.Remove(img)
	vol := bl.ids.bytes("esp/volume-id")
	err = ESP(bl.ctx, img, ESPOptions{
		Size:     p.Size(),
		Files:    map[string]string{ESPBootPath: uki},
		VolumeID: uint32(vol[0])<<24 | uint32(vol[1])<<16 | uint32(vol[2])<<8 | uint32(vol[3]),
	})
	if err != nil {
		return err
	}
	if err := bl.copyFile(p, img, "the ESP image"); err != nil {
		return err
	}
	bl.logf("esp: UKI %s (%d sections%s) on FAT %s in %.1fs", sizeOf(st.Size()), len(secs), signed, sizeOf(p.Size()), time.Since(t).Seconds())
	return nil
}

// slot writes slot-<name> and root-<name>.
func (bl *builder) slot(name string, sl Slot) error {
	t := time.Now()
	sp, err := bl.part(layout.SlotPartition(name))
	if err != nil {
		return err
	}
	rp, err := bl.part(layout.RootPartition(name))
	if err != nil {
		return err
	}
	if sl.Empty {
		bl.logf("slot %s: empty (%s and %s left zero)", name, sp.Name, rp.Name)
		return nil
	}
	pl, err := bl.payload(name, sl, rp.Name, rp.Size(), false, nil)
	if err != nil {
		return err
	}
	if n := slotimg.Size(pl.parts); n > sp.Size() {
		return bl.tooLarge(sp, fmt.Sprintf("the slot container (kernel %s %s, initrd %s %s)", sl.Kernel, mib(pl.kernelSize), sl.Initrd, mib(pl.initrdSize)), n, n)
	}
	w := sp.SectionWriter(bl.disk)
	n, err := slotimg.Write(w, pl.parts)
	if err != nil {
		return fmt.Errorf("image: writing the slot container into %s: %w", sp.Name, err)
	}
	if err := bl.copyFile(rp, pl.root, "the "+pl.fstype+" root file system"); err != nil {
		return err
	}
	bl.logf("slot %s: container %s (manifest %s), %s root in %.1fs", name, sizeOf(n), pl.signed, pl.fstype, time.Since(t).Seconds())
	return nil
}

// payload is what a slot container or the recovery seed holds.
type payload struct {
	// parts: kernel, initrd, manifest and, if signed, manifest.sig; for
	// the seed then slot-manifest and, if signed, slot-manifest.sig.
	parts                  []slotimg.Part
	kernelSize, initrdSize int64
	// root is the file holding the root file system (with its verity tree
	// appended on a verity board).
	root   string
	fstype string
	signed string // for the log
}

// payload makes the root file system (sized for a partition rootPart of
// rootSize bytes), its verity tree, the manifest and its signatures for
// slot name ("recovery" for the seed). The manifest names the board and
// the role: a slot's, or for the seed a seed's (with the digest of data if
// data is not nil) followed by the slot manifest the seed installs.
func (bl *builder) payload(name string, sl Slot, rootPart string, rootSize int64, seed bool, data []byte) (*payload, error) {
	fstype := sl.RootFSType
	if fstype == "" {
		fstype = bl.s.Board.RootFSType
	}
	var err error

	// The root file system first: the manifest names its type.
	root := sl.RootImage
	if sl.RootTar != "" {
		t := time.Now()
		tree := filepath.Join(bl.work, "root-"+name+".tree")
		if err := removeTree(tree); err != nil {
			return nil, fmt.Errorf("image: slot %s root: %w", name, err)
		}
		if err := UnpackTar(bl.ctx, sl.RootTar, tree); err != nil {
			return nil, fmt.Errorf("image: slot %s root_tar: %w", name, err)
		}
		// The file system keeps the tree; the tree can be large.
		defer removeTree(tree)
		bl.logf("slot %s: unpacked %s in %.1fs", name, sl.RootTar, time.Since(t).Seconds())
		sl.RootDir = tree
	} else if sl.RootDir != "" && bl.s.Channel != nil {
		// The channel's files go into a copy (hard links where the
		// file system allows: the files are replaced, not written to).
		tree := filepath.Join(bl.work, "root-"+name+".tree")
		if err := copyRootTree(bl.ctx, sl.RootDir, tree); err != nil {
			return nil, fmt.Errorf("image: slot %s root_dir: %w", name, err)
		}
		defer removeTree(tree)
		sl.RootDir = tree
	}
	if sl.RootDir != "" && bl.s.Channel != nil {
		if err := addChannel(sl.RootDir, bl.s.Channel); err != nil {
			return nil, fmt.Errorf("image: slot %s: the channel: %w", name, err)
		}
	}
	if sl.RootDir != "" {
		root = filepath.Join(bl.work, "root-"+name+"."+fstype)
		size := rootSize
		if bl.s.Board.RootVerity {
			// Leave room for the verity tree: about 1/128 of the data
			// for SHA-256 over 4 KiB blocks, plus the upper levels.
			size = (size - size/100 - 64<<10) / 4096 * 4096
		}
		if fstype == FSErofs {
			size = 0 // checked below, with the partition's name
		}
		if _, err := Rootfs(bl.ctx, root, RootfsOptions{Type: fstype, Dir: sl.RootDir, Size: size, UUID: bl.ids.uuid("root/" + name)}); err != nil {
			if fstype == FSExt4 {
				// ext4 takes the partition's size: a tree too large
				// for it fails in mkfs.ext4.
				return nil, fmt.Errorf("image: slot %s root file system: %w; partition %s is %s: if the tree does not fit, give it more in the spec's \"partition_mb\"",
					name, err, rootPart, mib(rootSize))
			}
			return nil, fmt.Errorf("image: slot %s root file system: %w", name, err)
		}
	} else {
		rf, err := os.Open(root)
		if err != nil {
			return nil, fmt.Errorf("image: slot %s root image: %w", name, err)
		}
		got, err := FSType(rf)
		rf.Close()
		if err != nil {
			return nil, fmt.Errorf("image: slot %s root image %s: %w", name, root, err)
		}
		if got != fstype {
			if got == "" {
				got = "no erofs, ext4 or squashfs superblock"
			}
			return nil, fmt.Errorf("image: slot %s root image %s: want %s (root_fstype, or the board's), found %s: fix root_fstype or the image", name, root, fstype, got)
		}
	}

	kernel, err := os.ReadFile(sl.Kernel)
	if err != nil {
		return nil, fmt.Errorf("image: slot %s kernel: %w", name, err)
	}
	if bl.s.SecureBootKeys != "" && !bl.s.KeepKernelSignatures {
		var kernelSig string
		if kernel, kernelSig, err = signKernel(kernel, bl.s.SecureBootKeys); err != nil {
			return nil, fmt.Errorf("image: slot %s kernel %s: %w", name, sl.Kernel, err)
		}
		bl.logf("slot %s: kernel %s", name, kernelSig)
	}
	initrd, err := os.ReadFile(sl.Initrd)
	if err != nil {
		return nil, fmt.Errorf("image: slot %s initrd: %w", name, err)
	}
	m := manifest.Manifest{
		Compatible:      bl.s.Board.Name,
		Role:            manifest.RoleSlot,
		Version:         sl.Version,
		SecurityVersion: sl.SecurityVersion,
		Cmdline:         sl.Cmdline,
		Root:            manifest.Root{FSType: fstype},
	}
	if bl.s.Board.RootVerity {
		if root, m.Root.Verity, err = bl.verity(name, rootPart, root, rootSize); err != nil {
			return nil, err
		}
	}
	if m.Kernel, err = manifest.DigestOf(bytes.NewReader(kernel)); err != nil {
		return nil, fmt.Errorf("image: slot %s kernel: %w", name, err)
	}
	if m.Initrd, err = manifest.DigestOf(bytes.NewReader(initrd)); err != nil {
		return nil, fmt.Errorf("image: slot %s initrd: %w", name, err)
	}
	pl := &payload{
		parts: []slotimg.Part{
			{Name: slotimg.EntryKernel, Data: kernel},
			{Name: slotimg.EntryInitrd, Data: initrd},
		},
		kernelSize: int64(len(kernel)), initrdSize: int64(len(initrd)),
		root: root, fstype: fstype, signed: "unsigned",
	}
	signers, err := bl.signers(name)
	if err != nil {
		return nil, err
	}
	// add appends the manifest m as entry (and its signatures as sigEntry).
	add := func(m manifest.Manifest, entry, sigEntry string) error {
		mb, err := m.Marshal()
		if err != nil {
			return fmt.Errorf("image: slot %s: %w", name, err)
		}
		pl.parts = append(pl.parts, slotimg.Part{Name: entry, Data: mb})
		if len(signers) == 0 {
			return nil
		}
		sig, err := manifest.Sign(mb, nil, signers...)
		if err != nil {
			return fmt.Errorf("image: slot %s: %w", name, err)
		}
		pl.parts = append(pl.parts, slotimg.Part{Name: sigEntry, Data: sig})
		return nil
	}
	if seed {
		sm := m
		sm.Role = manifest.RoleSeed
		if data != nil {
			d, err := manifest.DigestOf(bytes.NewReader(data))
			if err != nil {
				return nil, err
			}
			sm.Data = &d
		}
		if err := add(sm, slotimg.EntryManifest, manifest.SigEntry); err != nil {
			return nil, err
		}
		if err := add(m, seedimg.EntrySlotManifest, seedimg.EntrySlotSig); err != nil {
			return nil, err
		}
	} else if err := add(m, slotimg.EntryManifest, manifest.SigEntry); err != nil {
		return nil, err
	}
	if len(signers) > 0 {
		ids := make([]string, len(signers))
		for i, k := range signers {
			ids[i] = k.ID()
		}
		pl.signed = "signed by " + strings.Join(ids, ", ")
	}
	return pl, nil
}

// recovery writes the recovery seed (package format/seedimg) into the partition
// recovery: one slot container with the entries kernel, initrd, manifest
// (role seed), manifest.sig, slot-manifest (role slot), slot-manifest.sig,
// root (the root file system with its dm-verity tree, the bytes a
// root-<slot> partition gets) and, when the board has a data partition,
// data (its empty file system, in the seed's sparse encoding, whose digest
// the seed's manifest holds). The root is sized for the smallest
// root-<slot> partition: the seed's root is reinstalled there.
func (bl *builder) recovery(sl Slot, dataImg string) error {
	t := time.Now()
	p, err := bl.part("recovery")
	if err != nil {
		return err
	}
	rootPart := ""
	var rootSize int64
	for _, name := range bl.s.Board.Slots {
		rp, err := bl.part(layout.RootPartition(name))
		if err != nil {
			return err
		}
		if rootPart == "" || rp.Size() < rootSize {
			rootPart, rootSize = rp.Name, rp.Size()
		}
	}
	var data []byte
	if dataImg != "" {
		img, err := os.ReadFile(dataImg)
		if err != nil {
			return fmt.Errorf("image: recovery seed: %w", err)
		}
		var b bytes.Buffer
		if err := seedimg.EncodeData(&b, img); err != nil {
			return fmt.Errorf("image: recovery seed data entry: %w", err)
		}
		data = b.Bytes()
	}
	pl, err := bl.payload("recovery", sl, rootPart, rootSize, true, data)
	if err != nil {
		return err
	}
	root, err := os.ReadFile(pl.root)
	if err != nil {
		return fmt.Errorf("image: recovery seed: %w", err)
	}
	if int64(len(root)) > rootSize {
		return fmt.Errorf("image: recovery seed: the root file system is %s, partition %s has %s: %s, or make it smaller: %w",
			mib(int64(len(root))), rootPart, mib(rootSize), bl.sizeHint(rootPart, int64(len(root))), ErrTooLarge)
	}
	parts := append(pl.parts, slotimg.Part{Name: slotimg.EntryRoot, Data: root})
	what := fmt.Sprintf("the recovery seed (kernel %s %s, initrd %s %s, root %s", sl.Kernel, mib(pl.kernelSize), sl.Initrd, mib(pl.initrdSize), mib(int64(len(root))))
	if data != nil {
		parts = append(parts, slotimg.Part{Name: slotimg.EntryData, Data: data})
		what += fmt.Sprintf(", data %s", mib(int64(len(data))))
	}
	what += ")"
	if n := slotimg.Size(parts); n > p.Size() {
		return bl.tooLarge(p, what, n, n)
	}
	n, err := slotimg.Write(p.SectionWriter(bl.disk), parts)
	if err != nil {
		return fmt.Errorf("image: writing the recovery seed into %s: %w", p.Name, err)
	}
	bl.logf("recovery: seed %s (manifest %s; root %s, data %s) in %.1fs", sizeOf(n), pl.signed, sizeOf(int64(len(root))), sizeOf(int64(len(data))), time.Since(t).Seconds())
	return nil
}

// verity copies the root file system into the work folder, appends its
// dm-verity hash tree (veritysetup format 1, SHA-256, 4 KiB blocks, no
// superblock) at the next 4 KiB boundary, and returns the new image and the
// manifest's verity parameters. The salt is derived from the seed, so the
// image stays reproducible.
func (bl *builder) verity(name, part, root string, partSize int64) (string, *manifest.Verity, error) {
	data, err := os.ReadFile(root)
	if err != nil {
		return "", nil, fmt.Errorf("image: slot %s root: %w", name, err)
	}
	const block = 4096
	fsSize := (int64(len(data)) + block - 1) / block * block
	data = append(data, make([]byte, fsSize-int64(len(data)))...)
	salt := sha256.Sum256([]byte("keel verity salt\x00" + bl.s.Seed + "\x00" + name))
	p := verity.Params{Salt: salt[:], DataBlocks: uint64(fsSize / block), HashOffset: uint64(fsSize)}
	treeSize, err := p.TreeSize()
	if err != nil {
		return "", nil, fmt.Errorf("image: slot %s verity: %w", name, err)
	}
	if fsSize+treeSize > partSize {
		return "", nil, fmt.Errorf("image: slot %s: the root file system (%s) and its verity tree (%s) need %s, partition %s has %s: %s, or make the root smaller: %w",
			name, mib(fsSize), mib(treeSize), mib(fsSize+treeSize), part, mib(partSize), bl.sizeHint(part, fsSize+treeSize), ErrTooLarge)
	}
	out := filepath.Join(bl.work, "root-"+name+".verity")
	f, err := os.Create(out)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return "", nil, err
	}
	rootHash, _, err := verity.Build(bytes.NewReader(data), fsSize, f, p)
	if err != nil {
		return "", nil, fmt.Errorf("image: slot %s verity: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", nil, err
	}
	bl.logf("slot %s: dm-verity tree %s after %s of %s, root hash %x", name, mib(treeSize), mib(fsSize), part, rootHash)
	return out, &manifest.Verity{RootHash: hex.EncodeToString(rootHash), Salt: hex.EncodeToString(salt[:]),
		DataBlocks: p.DataBlocks, HashOffset: p.HashOffset}, nil
}

// signers returns the keys that sign slot name's manifest: the Spec's
// SigningKeys (none for an Unsigned Spec).
func (bl *builder) signers(name string) ([]manifest.PrivateKey, error) {
	var keys []manifest.PrivateKey
	for _, p := range bl.s.SigningKeys {
		k, err := manifest.ReadPrivateKey(p)
		if err != nil {
			return nil, fmt.Errorf("image: slot %s: %w", name, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// data makes the empty ext4 file system of the data partition and returns
// its file.
func (bl *builder) data() (string, error) {
	t := time.Now()
	p, err := bl.part("data")
	if err != nil {
		return "", err
	}
	img := filepath.Join(bl.work, "data.ext4")
	// The last partition ends where the backup GPT begins, not on a block
	// boundary: whole 4 KiB ext4 blocks only.
	size := p.Size() &^ 4095
	if _, err := Rootfs(bl.ctx, img, RootfsOptions{Type: FSExt4, Size: size, UUID: bl.ids.uuid("data"), Label: "data"}); err != nil {
		return "", fmt.Errorf("image: data partition: %w", err)
	}
	if err := bl.copyFile(p, img, "the data file system"); err != nil {
		return "", err
	}
	bl.logf("data: empty ext4 %s in %.1fs", sizeOf(size), time.Since(t).Seconds())
	return img, nil
}

// copyFile copies the file src into partition p, checking that it fits.
// Blocks of zeros are skipped: the disk file is new and reads as zeros, and
// stays sparse.
func (bl *builder) copyFile(p gpt.Partition, src, what string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if st.Size() > p.Size() {
		return bl.tooLarge(p, what+" ("+src+")", st.Size(), st.Size())
	}
	w := p.SectionWriter(bl.disk)
	buf := make([]byte, 1<<20)
	var off int64
	for {
		if err := bl.ctx.Err(); err != nil {
			return fmt.Errorf("image: %w", err)
		}
		n, rerr := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, err := w.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("image: writing %s into %s: %w", what, p.Name, err)
			}
		}
		off += int64(n)
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("image: reading %s: %w", src, rerr)
		}
	}
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// idSource derives every identifier of an image from one seed.
type idSource struct{ seed string }

// bytes returns 16 bytes for what: SHA-256 of the seed and what.
func (s idSource) bytes(what string) [16]byte {
	h := sha256.Sum256([]byte("keel image id\x00" + s.seed + "\x00" + what))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x40 // version 4 (random-looking)
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return b
}

// guid returns the identifier for what as a GPT GUID.
func (s idSource) guid(what string) gpt.GUID { return gpt.GUIDFromRFC4122(s.bytes(what)) }

// uuid returns the identifier for what as a lower-case UUID string.
func (s idSource) uuid(what string) string {
	b := s.bytes(what)
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
