// Command tandem-guest is PID 1 of the lab's and the tests' virtual machine: a Debian kernel
// boots it from an initramfs, and it runs a workload that checks its own disk.
//
// It mounts /proc, /sys and /dev, loads the virtio modules the initramfs carries (Debian builds
// virtio-blk as a module), and then writes sequence-numbered, checksummed 4 KiB blocks to
// /dev/vda with O_DIRECT, flushing every few writes, for as long as the VM runs. It remembers in
// memory which sequence number each block last received. Because a live migration moves the
// guest's memory with it, that record is exactly what the disk must hold on whichever node the VM
// runs now: every few seconds the guest reads every block it wrote back (O_DIRECT again) and
// reports the first one that differs. Everything it says goes to the serial console, one
// "tandem-guest: <event> key=value ..." line per event, which QEMU writes to the launcher pod's
// log.
//
// Standard library only, built static (CGO_ENABLED=0).
package main

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

const (
	blockSize = 4096
	magic     = "TANDEMVB"
	// Header: magic, block index, sequence number, run id (8 bytes each), CRC-32C of the rest.
	headerSize = 40
)

// finit_module(2) on x86_64; the syscall package has no constant for it.
const sysFinitModule = 313

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type settings struct {
	disk        string
	blocks      int           // how many 4 KiB blocks from the start of the disk the workload uses
	flushEvery  int           // writes between two flushes (fdatasync)
	verifyEvery time.Duration // time between two verify passes
	writePause  time.Duration // sleep between two writes (0: as fast as it can)
}

func main() {
	if os.Getpid() == 1 {
		setUpAsInit()
	}
	s := parseSettings(kernelCommandLine())
	if err := run(s); err != nil {
		say("fatal", "error", err.Error())
	}
	// PID 1 must not exit (the kernel panics); park so the console stays readable.
	for {
		time.Sleep(time.Hour)
	}
}

func say(event string, kv ...string) {
	var b strings.Builder
	b.WriteString("tandem-guest: ")
	b.WriteString(event)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %s=%s", kv[i], strings.ReplaceAll(kv[i+1], " ", "_"))
	}
	b.WriteByte('\n')
	os.Stdout.WriteString(b.String())
}

func setUpAsInit() {
	mounts := []struct{ src, dst, fs string }{
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"devtmpfs", "/dev", "devtmpfs"},
	}
	for _, m := range mounts {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := syscall.Mount(m.src, m.dst, m.fs, 0, ""); err != nil && err != syscall.EBUSY {
			say("warning", "mount", m.dst, "error", err.Error())
		}
	}
	// The console device: the kernel opened it for us only if /dev/console existed in the
	// initramfs; reopen it from devtmpfs so output reaches the serial port either way.
	if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		os.Stdout = f
		os.Stderr = f
	}
	// Dependency order (modules.dep is not in the initramfs).
	for _, name := range []string{"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk"} {
		if err := loadModule("/lib/modules/" + name + ".ko"); err != nil {
			say("warning", "module", name, "error", err.Error())
		}
	}
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	params := []byte{0}
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 && errno != syscall.EEXIST {
		return errno
	}
	return nil
}

func kernelCommandLine() string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return ""
	}
	return string(b)
}

// parseSettings reads tandem.<name>=<value> words from the kernel command line.
func parseSettings(cmdline string) settings {
	s := settings{disk: "/dev/vda", blocks: 4096, flushEvery: 8, verifyEvery: 3 * time.Second}
	for _, word := range strings.Fields(cmdline) {
		key, value, ok := strings.Cut(word, "=")
		if !ok || !strings.HasPrefix(key, "tandem.") {
			continue
		}
		switch strings.TrimPrefix(key, "tandem.") {
		case "disk":
			s.disk = value
		case "blocks":
			if n, err := strconv.Atoi(value); err == nil && n > 0 {
				s.blocks = n
			}
		case "flush_every":
			if n, err := strconv.Atoi(value); err == nil && n > 0 {
				s.flushEvery = n
			}
		case "verify_every_ms":
			if n, err := strconv.Atoi(value); err == nil && n > 0 {
				s.verifyEvery = time.Duration(n) * time.Millisecond
			}
		case "write_pause_ms":
			if n, err := strconv.Atoi(value); err == nil && n >= 0 {
				s.writePause = time.Duration(n) * time.Millisecond
			}
		}
	}
	return s
}

func openDisk(path string) (*os.File, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
		if err == nil || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alignedBuffer returns page-aligned memory, which O_DIRECT needs.
func alignedBuffer(size int) ([]byte, error) {
	return syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// fill writes block index's content for sequence number seq of run runID into b.
func fill(b []byte, index, seq, runID uint64) {
	copy(b[0:8], magic)
	binary.LittleEndian.PutUint64(b[8:16], index)
	binary.LittleEndian.PutUint64(b[16:24], seq)
	binary.LittleEndian.PutUint64(b[24:32], runID)
	x := index*0x9E3779B97F4A7C15 ^ seq*0xBF58476D1CE4E5B9 ^ runID
	for off := headerSize; off < blockSize; off += 8 {
		// splitmix64: cheap, and different for every block and sequence number.
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		binary.LittleEndian.PutUint64(b[off:off+8], z^(z>>31))
	}
	binary.LittleEndian.PutUint32(b[32:36], checksum(b))
}

func checksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[0:32])
	return crc32.Update(c, castagnoli, b[headerSize:blockSize])
}

// check says what is wrong with block index read back as b, or "" when it holds seq of runID.
func check(b []byte, index, seq, runID uint64) string {
	if string(b[0:8]) != magic {
		return "no-header"
	}
	if got := binary.LittleEndian.Uint32(b[32:36]); got != checksum(b) {
		return "bad-checksum"
	}
	if got := binary.LittleEndian.Uint64(b[8:16]); got != index {
		return fmt.Sprintf("misplaced(holds-block-%d)", got)
	}
	if got := binary.LittleEndian.Uint64(b[24:32]); got != runID {
		return "other-run"
	}
	if got := binary.LittleEndian.Uint64(b[16:24]); got != seq {
		return fmt.Sprintf("stale(holds-seq-%d)", got)
	}
	return ""
}

func run(s settings) error {
	disk, err := openDisk(s.disk)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.disk, err)
	}
	size, err := disk.Seek(0, 2)
	if err != nil {
		return err
	}
	if max := int(size / blockSize); s.blocks > max {
		s.blocks = max
	}
	if s.blocks == 0 {
		return fmt.Errorf("%s holds no whole 4 KiB block", s.disk)
	}
	var runID uint64
	for runID == 0 {
		runID = uint64(time.Now().UnixNano()) * 0x2545F4914F6CDD1D
	}
	say("ready", "disk", s.disk, "bytes", strconv.FormatInt(size, 10), "blocks", strconv.Itoa(s.blocks),
		"run", strconv.FormatUint(runID, 16))

	const chunkBlocks = 64 // verify reads 256 KiB at a time
	buf, err := alignedBuffer(chunkBlocks * blockSize)
	if err != nil {
		return err
	}
	last := make([]uint64, s.blocks) // the sequence number each block last received; 0: never written
	var seq, flushes, writeErrors, sinceFlush uint64
	var pass int
	rng := runID
	nextVerify := time.Now().Add(s.verifyEvery)
	lastReport, writesAtReport := time.Now(), uint64(0)
	for {
		seq++
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		index := rng % uint64(s.blocks)
		block := buf[:blockSize]
		fill(block, index, seq, runID)
		if _, err := disk.WriteAt(block, int64(index)*blockSize); err != nil {
			writeErrors++
			say("io-error", "op", "write", "block", strconv.FormatUint(index, 10), "seq", strconv.FormatUint(seq, 10), "error", err.Error())
			time.Sleep(100 * time.Millisecond)
		} else {
			last[index] = seq
			sinceFlush++
		}
		if sinceFlush >= uint64(s.flushEvery) {
			if err := syscall.Fdatasync(int(disk.Fd())); err != nil {
				writeErrors++
				say("io-error", "op", "flush", "seq", strconv.FormatUint(seq, 10), "error", err.Error())
			} else {
				flushes++
				sinceFlush = 0
			}
		}
		if s.writePause > 0 {
			time.Sleep(s.writePause)
		}
		now := time.Now()
		if now.Sub(lastReport) >= time.Second {
			rate := float64(seq-writesAtReport) / now.Sub(lastReport).Seconds()
			say("progress", "seq", strconv.FormatUint(seq, 10), "writes_per_s", strconv.FormatFloat(rate, 'f', 0, 64),
				"flushes", strconv.FormatUint(flushes, 10), "io_errors", strconv.FormatUint(writeErrors, 10))
			lastReport, writesAtReport = now, seq
		}
		if now.After(nextVerify) {
			pass++
			verify(disk, buf, last, runID, pass, seq)
			nextVerify = time.Now().Add(s.verifyEvery)
		}
	}
}

// verify reads every written block back and reports the first wrong one (and how many are).
func verify(disk *os.File, buf []byte, last []uint64, runID uint64, pass int, seq uint64) {
	started := time.Now()
	chunk := len(buf) / blockSize
	written, wrong := 0, 0
	first := ""
	for start := 0; start < len(last); start += chunk {
		n := chunk
		if start+n > len(last) {
			n = len(last) - start
		}
		if _, err := disk.ReadAt(buf[:n*blockSize], int64(start)*blockSize); err != nil {
			say("io-error", "op", "read", "block", strconv.Itoa(start), "error", err.Error())
			wrong++
			continue
		}
		for i := 0; i < n; i++ {
			want := last[start+i]
			if want == 0 {
				continue
			}
			written++
			if problem := check(buf[i*blockSize:(i+1)*blockSize], uint64(start+i), want, runID); problem != "" {
				wrong++
				if first == "" {
					first = fmt.Sprintf("block=%d want_seq=%d problem=%s", start+i, want, problem)
				}
			}
		}
	}
	result := "ok"
	if wrong > 0 {
		result = "FAIL"
	}
	kv := []string{"pass", strconv.Itoa(pass), "result", result, "seq", strconv.FormatUint(seq, 10),
		"blocks", strconv.Itoa(written), "wrong", strconv.Itoa(wrong), "ms", strconv.FormatInt(time.Since(started).Milliseconds(), 10)}
	if first != "" {
		kv = append(kv, "first", first)
	}
	say("verify", kv...)
}
