// Package kmodtest builds fake kernel modules for tests: ELF objects whose
// .modinfo section holds the given fields, compiled with gcc -c from C
// source the way the kernel's build lays .modinfo out.
package kmodtest
