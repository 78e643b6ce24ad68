package e2e

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite"
)

// TestAuditLogDetectsTampering runs a job, checks that the audit log holds
// its story and verifies, then edits, deletes, reorders and cuts the log in
// the database and checks that `lode audit verify` names the first bad
// entry each time.
func TestAuditLogDetectsTampering(t *testing.T) {
	home := t.TempDir()
	env := []string{"LODE_HOME=" + home}
	spec := script(t, "outputs: out\n", "echo hi > out/x\n", nil)
	if code, _, stderr := lodeIn(t, t.TempDir(), env, "run", "--local", spec); code != 0 {
		t.Fatalf("run: %s", stderr)
	}
	code, stdout, stderr := lode(t, env, "audit", "verify", "--local")
	if code != 0 || !strings.Contains(stdout, "audit log intact") {
		t.Fatalf("verify of an untouched log: exit %d\n%s%s", code, stdout, stderr)
	}
	_, export, _ := lode(t, env, "audit", "export", "--local")
	for _, kind := range []string{"node.joined", "job.submitted", "job.placed", "key.granted", "artifact.downloaded", `"checkpoint"`} {
		if !strings.Contains(export, kind) {
			t.Errorf("the audit log lacks %s:\n%s", kind, export)
		}
	}

	db, err := sql.Open("sqlite", filepath.Join(home, "lode.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	db.QueryRow(`SELECT COUNT(*) FROM audit`).Scan(&n)
	if n < 5 {
		t.Fatalf("only %d audit entries", n)
	}
	tamper := func(what string, stmts ...string) {
		t.Helper()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(s); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	backup := func() {
		tamper("backup", `DROP TABLE IF EXISTS audit_backup`, `CREATE TABLE audit_backup AS SELECT * FROM audit`)
	}
	restore := func() { tamper("restore", `DELETE FROM audit`, `INSERT INTO audit SELECT * FROM audit_backup`) }
	backup()
	tests := []struct {
		name  string
		stmts []string
		want  string
	}{
		{"edited", []string{`UPDATE audit SET subject = 'job-innocent' WHERE seq = 3`}, "entry 3: its contents do not match"},
		{"deleted", []string{`DELETE FROM audit WHERE seq = 2`}, "entry 2: missing"},
		{"reordered", []string{`UPDATE audit SET seq = -1 WHERE seq = 2`, `UPDATE audit SET seq = 2 WHERE seq = 3`, `UPDATE audit SET seq = 3 WHERE seq = -1`},
			"entry 2: does not follow"},
		{"inserted", []string{`INSERT INTO audit SELECT seq + 1000, time, kind, actor, 'job-forged', project, detail, prev, hash FROM audit WHERE seq = 1`,
			`UPDATE audit SET seq = seq + 2000 WHERE seq BETWEEN 2 AND 999`, `UPDATE audit SET seq = seq - 1999 WHERE seq > 2000`,
			`UPDATE audit SET seq = 2 WHERE seq = 1001`}, "entry 2:"},
		{"tail cut", []string{fmt.Sprintf(`DELETE FROM audit WHERE seq > %d`, n-2)}, "cut after entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tamper(tt.name, tt.stmts...)
			defer restore()
			code, stdout, stderr := lode(t, env, "audit", "verify", "--local")
			if code != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("verify after %s: exit %d\n%s%s\nwant exit 1 naming %q", tt.name, code, stdout, stderr, tt.want)
			}
		})
	}
	if code, _, stderr := lode(t, env, "audit", "verify", "--local"); code != 0 {
		t.Errorf("restored log does not verify: %s", stderr)
	}
}
