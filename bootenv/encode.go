package bootenv

import (
	"fmt"
	"strconv"
	"strings"
)

// VarPrefix starts the name of every variable that holds the record.
const VarPrefix = "keel_"

// FormatVersion is the record format this keel writes and reads. A newer
// format is refused with a clear error rather than half understood.
const FormatVersion = "1"

// Var is one name=value pair of the encoded record.
type Var struct{ Name, Value string }

// Record variables (format 1). Variables with empty values are left out:
// U-Boot treats "name=" as a deletion.
//
//	keel_format=1
//	keel_slots=a,b
//	keel_active=a
//	keel_trial=b
//	keel_trial_id=<32 hex digits>     (the trial's id; see below)
//	keel_generation=7
//	keel_recovery=<reason>
//	keel_reinstalling=<slot>          (while recovery rewrites it)
//	keel_installing=<slot>            (while an update writes it)
//	keel_install_token=<32 hex digits> (the run writing it)
//	keel_last_recovery=<RFC 3339 time> <reason>
//	keel_last_slot=b keel_last_mode=trial keel_last_reason=<text>
//	keel_last_fallback_failed=b keel_last_fallback_slot=a
//	keel_last_fallback_mode=fallback keel_last_fallback_generation=12
//	keel_last_fallback_reason=<text>  (the last fallback; none: all absent)
//	keel_slot_<name>_state=good|trial|bad|empty
//	keel_slot_<name>_tries=<n>        (trial only)
//	keel_slot_<name>_version=<text>
//	keel_slot_<name>_secver=<n>
//	keel_slot_<name>_reason=<text>
//	keel_slot_<name>_uncounted=<n>    (trial only: boots in a row that ended without using their try)
//	keel_last_end=<how> keel_last_end_slot=b keel_last_end_mode=trial
//	keel_last_end_detail=<text>       (how the last boot ended; none: all absent)
//	keel_shutdown=reboot|poweroff|halt|kexec|keel-init (the running boot's end, noted)
//
// keel_trial_id and keel_install_token are optional (an older keel
// neither writes nor keeps them) and only ever compared: Decode drops one
// that is not 16-64 lowercase hexadecimal digits, or that comes without a
// trial (an install), rather than refusing the record. Neither may make
// keel-init start over, which would change what boots: the trial id
// decides only whether a trial's data area is copied, the token only
// which install run may finish. The same holds for how the last boot
// ended (keel_last_end*, dropped whole when any part is not one this
// keel knows), the shutdown note (keel_shutdown) and a trial's uncounted
// ends (keel_slot_<name>_uncounted, dropped unless a positive count of
// the trial slot): they decide only whether a trial's try was used, and
// an older keel, which drops them, counts every try as before.
const (
	varFormat     = VarPrefix + "format"
	varSlots      = VarPrefix + "slots"
	varActive     = VarPrefix + "active"
	varTrial      = VarPrefix + "trial"
	varTrialID    = VarPrefix + "trial_id"
	varInstToken  = VarPrefix + "install_token"
	varGeneration = VarPrefix + "generation"
	varRecovery   = VarPrefix + "recovery"
	varReinstall  = VarPrefix + "reinstalling"
	varInstalling = VarPrefix + "installing"
	varFactory    = VarPrefix + "factory_reset"
	varTransient  = VarPrefix + "transient"
	varStarted    = VarPrefix + "started_over"
	varRecovered  = VarPrefix + "last_recovery"
	varLastSlot   = VarPrefix + "last_slot"
	varLastMode   = VarPrefix + "last_mode"
	varLastReason = VarPrefix + "last_reason"
	varFellFailed = VarPrefix + "last_fallback_failed"
	varFellSlot   = VarPrefix + "last_fallback_slot"
	varFellMode   = VarPrefix + "last_fallback_mode"
	varFellGen    = VarPrefix + "last_fallback_generation"
	varFellReason = VarPrefix + "last_fallback_reason"
	varEnd        = VarPrefix + "last_end"
	varEndSlot    = VarPrefix + "last_end_slot"
	varEndMode    = VarPrefix + "last_end_mode"
	varEndDetail  = VarPrefix + "last_end_detail"
	varShutdown   = VarPrefix + "shutdown"
	slotVarPrefix = VarPrefix + "slot_"
)

// Encode returns the record as keel_* variables, in a fixed order. It does
// not validate r; stores call Validate before they Encode.
func Encode(r Record) []Var {
	var vs []Var
	add := func(name, value string) {
		if value != "" {
			vs = append(vs, Var{name, value})
		}
	}
	add(varFormat, FormatVersion)
	add(varSlots, strings.Join(r.SlotNames(), ","))
	add(varActive, r.Active)
	add(varTrial, r.Trial)
	add(varTrialID, r.TrialID)
	add(varGeneration, strconv.FormatUint(r.Generation, 10))
	add(varRecovery, r.Recovery)
	add(varReinstall, r.Reinstalling)
	add(varInstalling, r.Installing)
	add(varInstToken, r.InstallToken)
	if r.FactoryReset {
		add(varFactory, "1")
	}
	add(varRecovered, r.LastRecovery)
	add(varStarted, r.StartedOver)
	if r.Transient > 0 {
		add(varTransient, strconv.Itoa(r.Transient))
	}
	add(varLastSlot, r.Last.Slot)
	add(varLastMode, string(r.Last.Mode))
	add(varLastReason, r.Last.Reason)
	if f := r.LastFallback; !f.IsZero() {
		add(varFellFailed, f.Failed)
		add(varFellSlot, f.Slot)
		add(varFellMode, string(f.Mode))
		add(varFellGen, strconv.FormatUint(f.Generation, 10))
		add(varFellReason, f.Reason)
	}
	if e := r.LastEnd; !e.IsZero() {
		add(varEnd, string(e.How))
		add(varEndSlot, e.Slot)
		add(varEndMode, string(e.Mode))
		add(varEndDetail, e.Detail)
	}
	add(varShutdown, r.Shutdown)
	for _, s := range r.Slots {
		p := slotVarPrefix + s.Name + "_"
		add(p+"state", string(s.State))
		if s.State == StateTrial {
			add(p+"tries", strconv.Itoa(s.TriesLeft))
		}
		add(p+"version", s.Version)
		add(p+"secver", strconv.FormatUint(s.SecurityVersion, 10))
		add(p+"reason", s.Reason)
		if s.Unconfirmed > 0 {
			add(p+"unconfirmed", strconv.Itoa(s.Unconfirmed))
		}
		if s.Uncounted > 0 {
			add(p+"uncounted", strconv.Itoa(s.Uncounted))
		}
	}
	return vs
}

// IsRecordVar reports whether name belongs to the keel record.
func IsRecordVar(name string) bool { return strings.HasPrefix(name, VarPrefix) }

// DecodeVars is Decode for variables in stored order: a keel_* variable
// that appears twice makes the record corrupt (the second could have been
// appended by whoever can write the store), never "the last one wins".
func DecodeVars(vars []Var) (Record, error) {
	m := make(map[string]string, len(vars))
	for _, v := range vars {
		if _, dup := m[v.Name]; dup && IsRecordVar(v.Name) {
			return Record{}, fmt.Errorf("%w: %s is set twice", ErrCorrupt, v.Name)
		}
		m[v.Name] = v.Value
	}
	return Decode(m)
}

// Decode builds a record from variables (other than keel_* ones, which it
// ignores). With no keel_* variable at all it returns ErrNoState; any
// variable it cannot read is an ErrCorrupt error that names it. The result
// is validated.
func Decode(vars map[string]string) (Record, error) {
	kv := map[string]string{}
	for k, v := range vars {
		if IsRecordVar(k) {
			kv[k] = v
		}
	}
	if len(kv) == 0 {
		return Record{}, ErrNoState
	}
	bad := func(format string, args ...any) (Record, error) {
		return Record{}, fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	get := func(name string) string { return kv[name] }
	switch f := get(varFormat); f {
	case FormatVersion:
	case "":
		return bad("%s is missing (the keel_* variables were not written by keel)", varFormat)
	default:
		return bad("%s=%q: this keel reads format %s only; update keel", varFormat, f, FormatVersion)
	}
	var r Record
	names := get(varSlots)
	if names == "" {
		return bad("%s is missing", varSlots)
	}
	for _, name := range strings.Split(names, ",") {
		if !ValidSlotName(name) {
			return bad("%s=%q: slot name %q is not 1-16 characters a-z, 0-9", varSlots, names, name)
		}
		r.Slots = append(r.Slots, Slot{Name: name})
	}
	r.Active = get(varActive)
	r.Trial = get(varTrial)
	g, err := strconv.ParseUint(get(varGeneration), 10, 64)
	if err != nil {
		return bad("%s=%q is not a number", varGeneration, kv[varGeneration])
	}
	r.Generation = g
	r.Recovery = get(varRecovery)
	r.Reinstalling = get(varReinstall)
	r.Installing = get(varInstalling)
	if v := get(varTrialID); r.Trial != "" && ValidID(v) {
		r.TrialID = v
	}
	if v := get(varInstToken); r.Installing != "" && ValidID(v) {
		r.InstallToken = v
	}
	switch v := get(varFactory); v {
	case "":
	case "1":
		r.FactoryReset = true
	default:
		return bad("%s=%q: want 1 or nothing", varFactory, v)
	}
	r.LastRecovery = get(varRecovered)
	r.StartedOver = get(varStarted)
	if v := get(varTransient); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return bad("%s=%q is not a positive number", varTransient, v)
		}
		r.Transient = n
	}
	r.Last = Outcome{Slot: get(varLastSlot), Mode: Mode(get(varLastMode)), Reason: get(varLastReason)}
	// A record written before keel kept the last fallback has none of
	// these: no fallback recorded.
	r.LastFallback = Fallback{Failed: get(varFellFailed), Slot: get(varFellSlot), Mode: Mode(get(varFellMode)), Reason: get(varFellReason)}
	if g, ok := kv[varFellGen]; ok {
		n, err := strconv.ParseUint(get(varFellGen), 10, 64)
		if err != nil {
			return bad("%s=%q is not a number", varFellGen, g)
		}
		r.LastFallback.Generation = n
	}
	for i := range r.Slots {
		s := &r.Slots[i]
		p := slotVarPrefix + s.Name + "_"
		s.State = State(get(p + "state"))
		if s.State == "" {
			return bad("%sstate is missing", p)
		}
		if t, ok := kv[p+"tries"]; ok {
			n, err := strconv.Atoi(get(p + "tries"))
			if err != nil || n < 0 {
				return bad("%stries=%q is not a number of tries", p, t)
			}
			s.TriesLeft = n
		}
		s.Version = get(p + "version")
		if sv, ok := kv[p+"secver"]; ok {
			n, err := strconv.ParseUint(get(p+"secver"), 10, 64)
			if err != nil {
				return bad("%ssecver=%q is not a number", p, sv)
			}
			s.SecurityVersion = n
		}
		s.Reason = get(p + "reason")
		if u, ok := kv[p+"unconfirmed"]; ok {
			n, err := strconv.Atoi(get(p + "unconfirmed"))
			if err != nil || n <= 0 {
				return bad("%sunconfirmed=%q is not a positive number", p, u)
			}
			s.Unconfirmed = n
		}
		if n, err := strconv.Atoi(get(p + "uncounted")); err == nil && n > 0 && n <= MaxTransientCount && s.State == StateTrial {
			s.Uncounted = n
		}
	}
	r.LastEnd = decodeEnd(r, kv)
	if v := get(varShutdown); ValidShutdownNote(v) {
		r.Shutdown = v
	}
	// keel_* variables this keel does not know are ignored (and dropped
	// when it writes the record): a newer keel adds optional ones within
	// the same format (keel_last_fallback_* did), and an older keel in a
	// slot it fell back to must still read the record and commit the
	// slot. None of them can choose what boots: only the variables read
	// above do. A change older keels must not ignore raises the format.
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return r, nil
}

// decodeEnd reads keel_last_end*: the zero End when they are absent, or
// when any of them is not what this keel writes (a newer keel's way to
// end, a slot the record does not have, a detail that is not one line):
// how the last boot ended is for keel status only, and never makes the
// record unreadable.
func decodeEnd(r Record, kv map[string]string) End {
	e := End{How: How(kv[varEnd]), Slot: kv[varEndSlot], Mode: Mode(kv[varEndMode]), Detail: kv[varEndDetail]}
	if e.IsZero() {
		return e
	}
	r.LastEnd = e
	if r.validEnd() != nil || len(e.Detail) > MaxText || strings.ContainsAny(e.Detail, "\x00\n\\") {
		return End{}
	}
	return e
}
