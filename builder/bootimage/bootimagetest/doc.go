// Package bootimagetest makes the inputs of package builder/bootimage for
// tests: keel-init built for an architecture, a fake kernel folder with
// modules for a board, a board of the host's architecture, trusted keys.
package bootimagetest
