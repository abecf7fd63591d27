package main

// loop-sizelimit: raises the size limit of a live loop device, the one loop
// setting util-linux cannot change after attaching (losetup --sizelimit applies
// at attach time only). The Tandem node plugin attaches a volume as a loop
// device over an nbdfuse file that is larger than the volume and bounds the
// device by lo_sizelimit; after an online expansion it raises the limit, and
// the kernel resizes the device in place (set_capacity_and_notify: a change
// uevent with RESIZE=1), with the filesystem on it still mounted.
//
// Usage: tandem-fsutil loop-sizelimit DEVICE BYTES
//
// Prints {"device":…,"sizeLimit":…,"sizeBytes":…} (the limit and the device's
// capacity afterwards) on success; an error and exit code 1 otherwise.

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// From <linux/loop.h> and <linux/fs.h>; the syscall package has no names for them.
const (
	loopSetStatus64 = 0x4C04
	loopGetStatus64 = 0x4C05
	blkGetSize64    = 0x80081272
	loNameSize      = 64
	loKeySize       = 32
	sectorBytes     = 512
)

// loopInfo64 is struct loop_info64: 232 bytes, no padding on any architecture.
type loopInfo64 struct {
	Device         uint64
	Inode          uint64
	Rdevice        uint64
	Offset         uint64
	SizeLimit      uint64
	Number         uint32
	EncryptType    uint32
	EncryptKeySize uint32
	Flags          uint32
	FileName       [loNameSize]byte
	CryptName      [loNameSize]byte
	EncryptKey     [loKeySize]byte
	Init           [2]uint64
}

type sizeLimitResult struct {
	Device    string `json:"device"`
	SizeLimit uint64 `json:"sizeLimit"`
	SizeBytes uint64 `json:"sizeBytes"`
}

func ioctl(fd int, request uintptr, arg unsafe.Pointer) error {
	for {
		_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), request, uintptr(arg))
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// parseSizeLimit checks the BYTES argument: a positive whole number of 512-byte sectors.
func parseSizeLimit(text string) (uint64, error) {
	limit, err := strconv.ParseUint(text, 10, 64)
	if err != nil || limit == 0 || limit%sectorBytes != 0 || limit > 1<<62 {
		return 0, fmt.Errorf("size limit %q is not a positive multiple of %d bytes", text, sectorBytes)
	}
	return limit, nil
}

// checkRaise refuses what would not be a growth of a device attached with a size limit.
func checkRaise(device string, current, wanted uint64) error {
	if current == 0 {
		// No limit: the backing file's size decides. Setting one now could shrink the device.
		return fmt.Errorf("%s has no size limit (attached without --sizelimit); it cannot be grown this way", device)
	}
	if wanted < current {
		return fmt.Errorf("%s has a size limit of %d bytes; refusing to lower it to %d (volumes never shrink)", device, current, wanted)
	}
	return nil
}

// setLoopSizeLimit raises DEVICE's lo_sizelimit to limit: LOOP_GET_STATUS64,
// change the one field, LOOP_SET_STATUS64 (the kernel keeps the flags that
// call cannot change, such as direct I/O and read-only).
func setLoopSizeLimit(device string, limit uint64) (sizeLimitResult, error) {
	// O_RDONLY is enough for the loop ioctls (they check CAP_SYS_ADMIN, not the open mode).
	fd, err := syscall.Open(device, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return sizeLimitResult{}, &os.PathError{Op: "open", Path: device, Err: err}
	}
	defer syscall.Close(fd)
	var info loopInfo64
	if err := ioctl(fd, loopGetStatus64, unsafe.Pointer(&info)); err != nil {
		if err == syscall.ENOTTY || err == syscall.EINVAL {
			return sizeLimitResult{}, fmt.Errorf("%s is not a loop device: %w", device, err)
		}
		return sizeLimitResult{}, &os.PathError{Op: "LOOP_GET_STATUS64", Path: device, Err: err}
	}
	if err := checkRaise(device, info.SizeLimit, limit); err != nil {
		return sizeLimitResult{}, err
	}
	if info.SizeLimit != limit {
		info.SizeLimit = limit
		if err := ioctl(fd, loopSetStatus64, unsafe.Pointer(&info)); err != nil {
			return sizeLimitResult{}, &os.PathError{Op: "LOOP_SET_STATUS64", Path: device, Err: err}
		}
	}
	result := sizeLimitResult{Device: device}
	if err := ioctl(fd, loopGetStatus64, unsafe.Pointer(&info)); err != nil {
		return sizeLimitResult{}, &os.PathError{Op: "LOOP_GET_STATUS64", Path: device, Err: err}
	}
	result.SizeLimit = info.SizeLimit
	if err := ioctl(fd, blkGetSize64, unsafe.Pointer(&result.SizeBytes)); err != nil {
		return sizeLimitResult{}, &os.PathError{Op: "BLKGETSIZE64", Path: device, Err: err}
	}
	return result, nil
}

// loopSizeLimitCommand runs `loop-sizelimit DEVICE BYTES`; the exit code.
func loopSizeLimitCommand(args []string, out, errOut io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintln(errOut, "usage: tandem-fsutil loop-sizelimit DEVICE BYTES")
		return 2
	}
	limit, err := parseSizeLimit(args[1])
	if err == nil {
		var result sizeLimitResult
		if result, err = setLoopSizeLimit(args[0], limit); err == nil {
			line, _ := json.Marshal(result)
			fmt.Fprintln(out, string(line))
			return 0
		}
	}
	fmt.Fprintln(errOut, "tandem-fsutil:", err)
	return 1
}
