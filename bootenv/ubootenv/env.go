package ubootenv

import (
	"bytes"
	"fmt"
	"strings"
)

// Var is one environment variable.
type Var struct{ Name, Value string }

// Env is an ordered list of variables, as stored. The zero value is an
// empty environment ready to use. An Env is not safe for concurrent use.
type Env struct {
	vars []Var
	// dups lists names the stored env set more than once (parseData keeps
	// the last value, as U-Boot does); the keel record refuses them.
	dups []string
}

// Duplicates returns the names the stored env set more than once.
func (e *Env) Duplicates() []string { return e.dups }

// Get returns the value of name and whether it is set.
func (e *Env) Get(name string) (string, bool) {
	if i := e.index(name); i >= 0 {
		return e.vars[i].Value, true
	}
	return "", false
}

// Set sets name to value, keeping the position of an existing variable and
// appending a new one. The name must be non-empty and contain neither '='
// nor NUL; the value must not contain NUL.
//
// U-Boot (not libubootenv) reads some values differently from how they are
// stored: an empty value deletes the variable on import, and backslashes
// are escape characters (lib/hashtable.c himport_r). keel's own variables
// avoid both.
func (e *Env) Set(name, value string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkValue(name, value); err != nil {
		return err
	}
	if i := e.index(name); i >= 0 {
		e.vars[i].Value = value
		return nil
	}
	e.vars = append(e.vars, Var{Name: name, Value: value})
	return nil
}

// Delete removes name and reports whether it was set.
func (e *Env) Delete(name string) bool {
	i := e.index(name)
	if i < 0 {
		return false
	}
	e.vars = append(e.vars[:i], e.vars[i+1:]...)
	return true
}

// Vars returns a copy of the variables in stored order.
func (e *Env) Vars() []Var {
	return append([]Var(nil), e.vars...)
}

// Clone returns an independent copy of e.
func (e *Env) Clone() *Env {
	return &Env{vars: e.Vars()}
}

// Len returns the number of variables.
func (e *Env) Len() int { return len(e.vars) }

func (e *Env) index(name string) int {
	for i := range e.vars {
		if e.vars[i].Name == name {
			return i
		}
	}
	return -1
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("ubootenv: empty variable name")
	case strings.IndexByte(name, '=') >= 0:
		return fmt.Errorf("ubootenv: variable name %q contains '=' (U-Boot and libubootenv forbid it)", name)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("ubootenv: variable name %q contains a NUL byte (NUL ends an entry in the env)", name)
	}
	return nil
}

func checkValue(name, value string) error {
	if strings.IndexByte(value, 0) >= 0 {
		return fmt.Errorf("ubootenv: value of %q contains a NUL byte (NUL ends an entry in the env)", name)
	}
	return nil
}

// encodedLen is the number of data-area bytes e takes: every
// "name=value\0" plus the final empty entry "\0".
func (e *Env) encodedLen() int {
	n := 1
	for _, v := range e.vars {
		n += len(v.Name) + 1 + len(v.Value) + 1
	}
	return n
}

// encodeData lays e out in a data area of n bytes: "name=value\0"...,
// then "\0" (the empty entry that ends the env), then zero padding.
//
// Padding: U-Boot's own saveenv pads with zeros (lib/hashtable.c hexport_r
// memsets the buffer to '\0'); mkenvimage pads with 0xFF (-p changes it);
// libubootenv (uboot_env.c libuboot_env_store) leaves whatever its malloc'd
// buffer held, in practice the bytes of the copy it read. Readers never
// look past the empty entry, so keel follows U-Boot and writes zeros,
// which makes keel's image byte-identical to `mkenvimage -p 0`.
func encodeData(e *Env, n int) ([]byte, error) {
	need := e.encodedLen()
	if need > n {
		return nil, fmt.Errorf("%w: the env needs 0x%x bytes, the data area holds 0x%x", ErrTooLarge, need, n)
	}
	buf := make([]byte, n)
	p := 0
	for _, v := range e.vars {
		if err := checkName(v.Name); err != nil {
			return nil, err
		}
		if err := checkValue(v.Name, v.Value); err != nil {
			return nil, err
		}
		p += copy(buf[p:], v.Name)
		buf[p] = '='
		p++
		p += copy(buf[p:], v.Value)
		p++ // NUL ends the entry; the final empty entry and padding are already 0
	}
	return buf, nil
}

// parseData reads the variables of a data area. It follows libubootenv
// (uboot_env.c libuboot_load) and U-Boot (lib/hashtable.c himport_r):
//
//   - entries are NUL-terminated "name=value" strings; the first empty
//     entry ends the env and nothing after it (padding, stale bytes) is
//     looked at;
//   - the area may also end right after a complete entry (U-Boot accepts
//     that; mkenvimage and keel always leave room for the empty entry);
//   - an entry without '=' or with an empty name is skipped;
//   - a name set twice keeps its first position and its last value, as
//     both U-Boot and libubootenv replace on the second set.
//
// An entry that runs to the end of the area without its NUL is an error:
// the area is not an env (libubootenv returns -EIO there).
func parseData(data []byte) (*Env, error) {
	e := &Env{}
	seen := make(map[string]int) // name -> index in e.vars
	pos := 0
	for pos < len(data) && data[pos] != 0 {
		end := bytes.IndexByte(data[pos:], 0)
		if end < 0 {
			return nil, fmt.Errorf("entry at data offset 0x%x runs to the end of the area without a NUL", pos)
		}
		entry := data[pos : pos+end]
		pos += end + 1
		eq := bytes.IndexByte(entry, '=')
		if eq <= 0 {
			continue
		}
		name, value := string(entry[:eq]), string(entry[eq+1:])
		if i, ok := seen[name]; ok {
			e.vars[i].Value = value
			e.dups = append(e.dups, name)
		} else {
			seen[name] = len(e.vars)
			e.vars = append(e.vars, Var{Name: name, Value: value})
		}
	}
	return e, nil
}
