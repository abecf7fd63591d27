package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const block = 64 * 1024

// run feeds lines to serve and returns the replies by id.
func run(t *testing.T, lines ...string) map[int64]map[string]any {
	t.Helper()
	var out strings.Builder
	if err := serve(strings.NewReader(strings.Join(lines, "\n")), &out); err != nil {
		t.Fatalf("serve: %v", err)
	}
	replies := map[int64]map[string]any{}
	scanner := bufio.NewScanner(strings.NewReader(out.String()))
	for scanner.Scan() {
		var r map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &r); err != nil {
			t.Fatalf("reply is not JSON: %q", scanner.Text())
		}
		id := int64(r["id"].(float64))
		if _, dup := replies[id]; dup && id != 0 {
			t.Fatalf("two replies for id %d", id)
		}
		replies[id] = r
	}
	return replies
}

func sparseFile(t *testing.T, size int64, dataAt ...int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	chunk := []byte(strings.Repeat("x", block))
	for _, at := range dataAt {
		if _, err := f.WriteAt(chunk, at); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func req(id int, op, path string, offset, length int64) string {
	return fmt.Sprintf(`{"id":%d,"op":%q,"path":%q,"offset":%d,"length":%d}`, id, op, path, offset, length)
}

func extentsOf(t *testing.T, r map[string]any) [][2]int64 {
	t.Helper()
	if r["error"] != nil {
		t.Fatalf("unexpected error reply %v", r)
	}
	raw, _ := json.Marshal(r["extents"])
	var e [][2]int64
	if err := json.Unmarshal(raw, &e); err != nil || e == nil {
		t.Fatalf("bad extents %s", raw)
	}
	return e
}

func TestExtentsSkipHolesMergeAndClip(t *testing.T) {
	path := sparseFile(t, 64*block, 2*block, 3*block, 10*block)
	r := run(t,
		req(1, "extents", path, 0, 64*block),
		req(2, "extents", path, 2*block+100, 8*block),
		req(3, "extents", path, 20*block, 10*block),
		req(4, "extents", path, 0, 0),
		req(5, "extents", path, 0, 1000*block),
	)
	cases := map[int64][][2]int64{
		1: {{2 * block, 2 * block}, {10 * block, block}},
		2: {{2*block + 100, 2*block - 100}, {10 * block, 100}},
		3: {},
		4: {},
		5: {{2 * block, 2 * block}, {10 * block, block}},
	}
	for id, want := range cases {
		if got := extentsOf(t, r[id]); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("request %d: extents %v, want %v", id, got, want)
		}
	}
}

func TestPunchMakesAHole(t *testing.T) {
	path := sparseFile(t, 16*block, 0, block, 2*block)
	r := run(t, req(1, "punch", path, block, block), req(2, "punch", path, 0, 0))
	for id := range int64(2) {
		if r[id+1]["error"] != nil || len(r[id+1]) != 1 {
			t.Fatalf("punch %d: %v", id+1, r[id+1])
		}
	}
	got := extentsOf(t, run(t, req(7, "extents", path, 0, 16*block))[7])
	want := [][2]int64{{0, block}, {2 * block, block}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after punch: %v, want %v", got, want)
	}
	if info, _ := os.Stat(path); info.Size() != 16*block {
		t.Fatalf("punch changed the size to %d", info.Size())
	}
}

func TestBadRequestsGetErrorReplies(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	r := run(t,
		`not json`,
		`{"id":2,"op":"extents","path":"/x","offset":-1,"length":1}`,
		`{"id":3,"op":"extents","path":"/x","offset":0,"length":-5}`,
		`{"id":4,"op":"format","path":"/x","offset":0,"length":1}`,
		`{"id":5,"op":"punch","offset":0,"length":1}`,
		`{"id":6,"op":"punch","path":"/x","offset":"0","length":1}`,
		`{"id":7,"op":"punch","path":"/x","offset":9223372036854775807,"length":1}`,
		`{"id":8,"op":"extents","path":"/x","offset":0}`,
		req(9, "extents", missing, 0, 1),
		req(10, "punch", missing, 0, 1),
		`{"id":11,"op":"punch","path":"/x","offset":1.5,"length":1}`,
		``,
		strings.Repeat("y", maxLineBytes+10),
	)
	codes := map[int64]string{0: "EINVAL", 2: "EINVAL", 3: "EINVAL", 4: "EINVAL", 5: "EINVAL", 6: "EINVAL",
		7: "EINVAL", 8: "EINVAL", 9: "ENOENT", 10: "ENOENT", 11: "EINVAL"}
	for id, code := range codes {
		if r[id] == nil || r[id]["code"] != code || r[id]["error"] == "" {
			t.Errorf("request %d: reply %v, want code %s", id, r[id], code)
		}
	}
	var ids []int
	for id := range r {
		ids = append(ids, int(id))
	}
	sort.Ints(ids)
	// The unparseable and the over-long line both answer as id 0; the empty line gets no reply.
	if len(ids) != len(codes) {
		t.Errorf("replies for ids %v", ids)
	}
}

func TestManyConcurrentRequests(t *testing.T) {
	path := sparseFile(t, 4*block, block)
	var lines []string
	for i := 1; i <= 500; i++ {
		lines = append(lines, req(i, "extents", path, 0, 4*block))
	}
	r := run(t, lines...)
	if len(r) != 500 {
		t.Fatalf("%d replies, want 500", len(r))
	}
	for id, reply := range r {
		if got := extentsOf(t, reply); len(got) != 1 || got[0] != [2]int64{block, block} {
			t.Fatalf("request %d: %v", id, got)
		}
	}
}
