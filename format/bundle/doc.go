// Package bundle is keel's update bundle: one file that carries one slot's
// new software — its signed manifest, kernel and initrd, and its root file
// system with the dm-verity tree — laid out so that a sequential reader
// (a pipe, a USB stick, an HTTP stream) can check everything before it uses
// it.
//
// # Layout
//
// Two formats. Format 2 (FormatChunked, what Write writes unless
// Input.Plain) stores every part as independently compressed zstd
// chunks after the header region and a chunk index (chunks.go); its
// header's parts are those of the format-1 layout below, uncompressed,
// and View reads a format-2 bundle as that layout: fetching and
// decompressing only the chunks that hold the bytes asked for. Format 1
// (FormatPlain) is that layout stored as it is. All offsets are
// multiples of 4096 (Align). In file order:
//
//	preamble  24 bytes: "KEELBNDL", format version (u32 LE, 1 or 2), header
//	          length (u32), signature length (u32), CRC-32 (IEEE) of the
//	          20 bytes before it
//	header    the signed header: JSON (Header), then its signature envelope
//	          (package manifest's format, over SigDomain + the header
//	          bytes), zero padding to the next 4096 bytes
//	manifest      the slot's manifest (role slot), as the slot will hold it
//	manifest.sig  its signature envelope
//	kernel, initrd
//	tree      the root's dm-verity hash tree (veritysetup format 1, the
//	          bytes a root partition holds at the manifest's hash offset)
//	blockmap  (static delta bundles only) one bit per data block, least
//	          significant bit first: set when the block is in the data part
//	data      the root file system's data blocks, 4096 bytes each, in order
//	          (in a delta bundle, only the blocks the block map marks)
//
// # What vouches for what
//
// The header is signed with the same keys and envelope as manifests (key
// rotation included) but its own domain, so neither signature can pass for
// the other. It names the board (compatible), version and security
// version, and every part's offset, size and SHA-256: the installer checks
// the board, the anti-rollback counter and the sizes before anything is
// written, and every part's digest as it arrives. The manifest is checked
// against its own signature (keel-init will check it again at every boot)
// and must agree with the header. The data blocks are not checked against
// the data part's digest — an install fetches only some of them — but
// each one against its leaf in the dm-verity tree, whose root hash is in
// the signed manifest: the tree is the block index, and no second index is
// needed (RAUC's adaptive updates ship a block-hash-index because its
// images have no verity; keel's always do). The data part's digest serves
// `keel bundle verify`, which reads the whole file.
//
// Every size and offset in the preamble is unauthenticated until the
// signature verifies, and bounded before anything is allocated. In format
// 2 the chunk index is checked against its digest in the signed header
// before it is used, and a chunk is decompressed into at most the bytes
// its place in its part says it holds (a chunk that decompresses to more,
// to fewer, or fails, is refused naming it).
//
// # Reading
//
// Open, Verify, ReadParts, ReadTree and ReadBlockMap read through a Source
// (source.go): sorted byte ranges in, their bytes handed over in order, so
// that a pipe, a file and an HTTP server serve the same reader. The
// interface belongs to the format; package update/source implements it.
package bundle
