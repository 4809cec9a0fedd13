// Package builder groups what runs on the host to build images: the disk
// image (builder/image: GPT, ESP with keel's UKI, signed slots, dm-verity
// roots, the recovery seed), keel's initramfs archive (builder/initrd) and
// the kernel-module closure it carries (builder/kmod).
package builder
