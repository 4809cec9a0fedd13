// Package kmod finds Linux kernel modules and orders them for loading, the
// part of modprobe that keel's initramfs needs, without modprobe and
// without modules.dep.
//
// The source of truth is each module's own .modinfo ELF section (ParseModinfo,
// ReadFile): name=, depends=, softdep= and alias=. Scan walks a modules folder
// (lib/modules/<version>, the .ko files under it) and builds a Tree. Resolve
// takes the module names a board wants and returns their closure in a load
// order where every module comes after everything it depends on, or an error
// naming the missing module or the dependency cycle.
//
// Names follow the kernel's rules: '-' and '_' are the same character
// (dm-verity and dm_verity are one module; see Normalize). A wanted name that
// is no module's name is looked up among the modules' aliases (crc32c is an
// alias of crc32c_generic and crc32c_intel), and a name listed in
// modules.builtin is satisfied by the kernel itself.
//
// Modules must be uncompressed (.ko): Debian's kernels are built with
// CONFIG_MODULE_COMPRESS_NONE. Compressed modules (.ko.xz, .ko.zst, .ko.gz)
// are reported as an error naming the file.
package kmod
