package profiles

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Set is the validated profiles of one load. It is immutable: a reload
// builds a new Set and swaps it in whole, so that an exec never sees half of
// an old and half of a new policy.
type Set struct {
	all    []*Profile // sorted by name
	byName map[string]*Profile
	byPeer map[uint32]*Profile
	src    map[*Profile]*parsed
}

// ForUID returns the agent that a connecting process with this uid acts as.
func (s *Set) ForUID(uid uint32) (*Profile, bool) {
	p, ok := s.byPeer[uid]
	return p, ok
}

// ByName returns the agent with this name.
func (s *Set) ByName(name string) (*Profile, bool) {
	p, ok := s.byName[name]
	return p, ok
}

// All returns the profiles sorted by name, in a new slice.
func (s *Set) All() []*Profile {
	return append([]*Profile(nil), s.all...)
}

// Len is the number of profiles.
func (s *Set) Len() int { return len(s.all) }

// LoadDir loads every *.yaml and *.yml file directly in dir, in name order;
// hidden files (editor swap and backup files) and subdirectories are
// skipped. An empty directory is a valid set of zero agents; a missing one
// is an error, since it most likely is a wrong path. The error is an
// ErrorList of every problem in every file.
func LoadDir(dir string) (*Set, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, ErrorList{{File: dir, Msg: fmt.Sprintf("read profile directory: %v", err)}}
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(dir, name)
		// Stat, not e.Type(): a symlink to a file, as config management
		// likes to install, is a profile; a directory named x.yaml is not.
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			continue
		}
		paths = append(paths, path)
	}
	sort.Strings(paths)
	return LoadFiles(paths)
}

// LoadFiles loads the given profile files, as `deputy profile lint` does,
// with the same cross-profile checks as LoadDir.
func LoadFiles(paths []string) (*Set, error) {
	var (
		errs ErrorList
		pps  []*parsed
	)
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, &Error{File: path, Msg: fmt.Sprintf("read profile: %v", err)})
			continue
		}
		pp, err := parse(path, data)
		if err != nil {
			errs = errs.appendErr(path, err)
			continue
		}
		pps = append(pps, pp)
	}
	s, crossErrs := newSet(pps)
	errs = append(errs, crossErrs...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return s, nil
}

// newSet builds a Set and runs the cross-profile checks. Each conflict is
// reported once, on the later profile in load order, naming the earlier.
func newSet(pps []*parsed) (*Set, ErrorList) {
	s := &Set{
		byName: map[string]*Profile{},
		byPeer: map[uint32]*Profile{},
		src:    map[*Profile]*parsed{},
	}
	var errs ErrorList
	runAs := map[uint32]*parsed{}
	peerOf := map[uint32]*parsed{}
	for _, pp := range pps {
		p := pp.p
		if first, dup := s.byName[p.Name]; dup {
			errs = append(errs, pp.errorf("name", "duplicate name %q: already used by %s", p.Name, first.File))
			continue
		}
		ok := true
		// Two agents with one run-as uid could signal, ptrace and write the
		// files of each other's commands: they would be one agent.
		if other, dup := runAs[p.RunAs.UID]; dup {
			errs = append(errs, pp.errorf("runAs.uid", "runAs.uid %d is also the runAs uid of agent %q (%s)", p.RunAs.UID, other.p.Name, other.p.File))
			ok = false
		}
		// A run-as uid that is some agent's peer would let one agent's
		// commands connect to the daemon as that agent. Checked both ways
		// so that load order does not matter.
		if other, clash := peerOf[p.RunAs.UID]; clash {
			errs = append(errs, pp.errorf("runAs.uid", "runAs.uid %d is a peer uid of agent %q (%s): its commands could act as that agent", p.RunAs.UID, other.p.Name, other.p.File))
			ok = false
		}
		for _, uid := range p.PeerUIDs {
			if other, clash := runAs[uid]; clash {
				errs = append(errs, pp.errorf(pp.peerPath[uid], "peer uid %d is the runAs uid of agent %q (%s): that agent's commands could act as this one", uid, other.p.Name, other.p.File))
				ok = false
			}
			if other, dup := peerOf[uid]; dup {
				errs = append(errs, pp.errorf(pp.peerPath[uid], "peer uid %d is also a peer of agent %q (%s): a caller must map to exactly one agent", uid, other.p.Name, other.p.File))
				ok = false
			}
		}
		if !ok {
			continue
		}
		s.byName[p.Name] = p
		s.src[p] = pp
		s.all = append(s.all, p)
		runAs[p.RunAs.UID] = pp
		for _, uid := range p.PeerUIDs {
			peerOf[uid] = pp
			s.byPeer[uid] = p
		}
	}
	sort.Slice(s.all, func(i, j int) bool { return s.all[i].Name < s.all[j].Name })
	return s, errs
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
