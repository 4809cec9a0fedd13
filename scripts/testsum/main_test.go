package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"run","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}`,
		`{"Action":"pass","Package":"p","Test":"TestA"}`,
		`{"Action":"output","Package":"p","Test":"TestB","Output":"    b_test.go:3: no cpio\n"}`,
		`{"Action":"skip","Package":"p","Test":"TestB"}`,
		`{"Action":"output","Package":"p","Test":"TestC","Output":"    c_test.go:9: boom\n"}`,
		`{"Action":"fail","Package":"p","Test":"TestC"}`,
		`{"Action":"fail","Package":"p","Elapsed":1.5}`,
		`{"Action":"pass","Package":"q","Elapsed":0.25}`,
	}, "\n")
	var out bytes.Buffer
	if code := run(strings.NewReader(in), &out, false); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"c_test.go:9: boom", "FAIL\tp\t1.500s", "ok  \tq\t0.250s", "--- SKIP: p TestB: b_test.go:3: no cpio", "1 passed, 1 failed, 1 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// A skip alone fails unless allowed.
	skipOnly := `{"Action":"skip","Package":"p","Test":"TestB"}` + "\n" + `{"Action":"pass","Package":"p"}`
	if code := run(strings.NewReader(skipOnly), &bytes.Buffer{}, false); code != 1 {
		t.Errorf("a skip: exit %d, want 1", code)
	}
	if code := run(strings.NewReader(skipOnly), &bytes.Buffer{}, true); code != 0 {
		t.Errorf("a skip with -allow-skips: exit %d, want 0", code)
	}
}
