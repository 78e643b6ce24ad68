package core

import "fmt"

// Role is what a user may do in a project. Each role may do everything the
// roles before it may.
type Role string

const (
	// RoleViewer reads a project's jobs, logs, metrics and costs, but not
	// its data.
	RoleViewer Role = "viewer"
	// RoleMember also submits and cancels jobs, pushes datasets and reads
	// the project's data: outputs, checkpoints, datasets.
	RoleMember Role = "member"
	// RoleAdmin also manages the project's members and deletes datasets.
	RoleAdmin Role = "admin"
)

var roleRanks = map[Role]int{RoleViewer: 1, RoleMember: 2, RoleAdmin: 3}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	if _, ok := roleRanks[Role(s)]; !ok {
		return "", fmt.Errorf("core: unknown role %q (one of viewer, member, admin)", s)
	}
	return Role(s), nil
}

// Allows reports whether r may do what role need may; the empty role (no
// membership) allows nothing.
func (r Role) Allows(need Role) bool {
	have, ok := roleRanks[r]
	return ok && have >= roleRanks[need]
}
