package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseSizeLimit(t *testing.T) {
	for _, ok := range []string{"512", "4096", "1099511627776"} {
		if _, err := parseSizeLimit(ok); err != nil {
			t.Errorf("parseSizeLimit(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "0", "-512", "513", "1e9", "4096 ", "18446744073709551615"} {
		if _, err := parseSizeLimit(bad); err == nil {
			t.Errorf("parseSizeLimit(%q) accepted", bad)
		}
	}
}

func TestCheckRaiseOnlyGrowsALimitedDevice(t *testing.T) {
	if err := checkRaise("/dev/loop9", 4096, 8192); err != nil {
		t.Errorf("raise refused: %v", err)
	}
	if err := checkRaise("/dev/loop9", 4096, 4096); err != nil {
		t.Errorf("same limit refused: %v", err)
	}
	if err := checkRaise("/dev/loop9", 8192, 4096); err == nil || !strings.Contains(err.Error(), "never shrink") {
		t.Errorf("lowering allowed: %v", err)
	}
	if err := checkRaise("/dev/loop9", 0, 4096); err == nil || !strings.Contains(err.Error(), "no size limit") {
		t.Errorf("a device without a limit accepted one: %v", err)
	}
}

func TestCommandUsageAndNoLoopDevice(t *testing.T) {
	var out, errOut strings.Builder
	if code := loopSizeLimitCommand([]string{"/dev/null"}, &out, &errOut); code != 2 {
		t.Errorf("missing argument: exit %d", code)
	}
	errOut.Reset()
	if code := loopSizeLimitCommand([]string{"/dev/null", "4096"}, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "not a loop device") {
		t.Errorf("/dev/null: exit %d, %q", code, errOut.String())
	}
}

// Root only: a real loop device over a sparse file, grown while attached.
func TestRaisesTheLimitOfALiveLoopDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("no losetup")
	}
	file := filepath.Join(t.TempDir(), "backing")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(file, 64<<20); err != nil {
		t.Fatal(err)
	}
	created, err := exec.Command("losetup", "--find", "--show", "--sizelimit", strconv.Itoa(8<<20), file).Output()
	if err != nil {
		t.Skipf("losetup cannot attach here: %v", err)
	}
	device := strings.TrimSpace(string(created))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", device).Run() })

	result, err := setLoopSizeLimit(device, 24<<20)
	if err != nil {
		t.Fatalf("setLoopSizeLimit: %v", err)
	}
	if result.SizeLimit != 24<<20 || result.SizeBytes != 24<<20 {
		t.Errorf("after raising: %+v", result)
	}
	if _, err := setLoopSizeLimit(device, 16<<20); err == nil {
		t.Error("lowering the limit was allowed")
	}
	// A limit past the backing file leaves the device at the file's size.
	result, err = setLoopSizeLimit(device, 128<<20)
	if err != nil || result.SizeBytes != 64<<20 {
		t.Errorf("limit past the file: %+v, %v", result, err)
	}
	var out, errOut strings.Builder
	if code := loopSizeLimitCommand([]string{device, strconv.Itoa(128 << 20)}, &out, &errOut); code != 0 {
		t.Fatalf("command: exit %d, %s", code, errOut.String())
	}
	var printed sizeLimitResult
	if err := json.Unmarshal([]byte(out.String()), &printed); err != nil || printed.Device != device {
		t.Errorf("printed %q (%v)", out.String(), err)
	}
}
