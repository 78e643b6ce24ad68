package core

import "testing"

func TestRoleAllows(t *testing.T) {
	roles := []Role{"", RoleViewer, RoleMember, RoleAdmin}
	for i, have := range roles {
		for j, need := range roles[1:] {
			if got, want := have.Allows(need), i > 0 && i >= j+1; got != want {
				t.Errorf("%q.Allows(%q) = %v, want %v", have, need, got, want)
			}
		}
	}
	if Role("owner").Allows(RoleViewer) {
		t.Error("an unknown role allows something")
	}
	for _, s := range []string{"viewer", "member", "admin"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("ParseRole(root): want an error")
	}
}
