// Command tandem-fsutil gives the Tandem data plane the two file syscalls Node.js
// has no binding for: lseek(SEEK_DATA/SEEK_HOLE), to list a sparse replica file's
// allocated extents, and fallocate(PUNCH_HOLE), to trim.
//
// Usage: tandem-fsutil serve
//
// (and tandem-fsutil loop-sizelimit DEVICE BYTES, a one-shot command: loop.go)
//
// It reads one JSON request per line on stdin and writes one JSON reply per line
// on stdout, answering requests concurrently (replies may come out of order; the
// id pairs them). It exits when stdin closes, after answering what it has read.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"syscall"
)

// Linux values; the syscall package has no names for them.
const (
	seekData         = 3
	seekHole         = 4
	fallocKeepSize   = 0x1
	fallocPunchHole  = 0x2
	maxLineBytes     = 64 * 1024
	maxConcurrentOps = 64
)

type request struct {
	ID     *int64 `json:"id"`
	Op     string `json:"op"`
	Path   string `json:"path"`
	Offset *int64 `json:"offset"`
	Length *int64 `json:"length"`
}

type reply struct {
	ID      int64       `json:"id"`
	Extents *[][2]int64 `json:"extents,omitempty"`
	Error   string      `json:"error,omitempty"`
	Code    string      `json:"code,omitempty"`
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "loop-sizelimit" {
		os.Exit(loopSizeLimitCommand(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) != 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: tandem-fsutil serve   (JSON requests on stdin, replies on stdout)")
		fmt.Fprintln(os.Stderr, "       tandem-fsutil loop-sizelimit DEVICE BYTES")
		os.Exit(2)
	}
	if err := serve(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-fsutil:", err)
		os.Exit(1)
	}
}

// serve answers requests from in until it reaches EOF and every answer is written.
func serve(in io.Reader, out io.Writer) error {
	var (
		mu       sync.Mutex
		writeErr error
		wg       sync.WaitGroup
	)
	// One Write per reply line under the lock, so concurrent replies never interleave.
	send := func(r reply) {
		line, err := json.Marshal(r)
		if err != nil {
			line = fmt.Appendf(nil, `{"id":%d,"error":"cannot encode reply","code":"EIO"}`, r.ID)
		}
		line = append(line, '\n')
		mu.Lock()
		defer mu.Unlock()
		if writeErr == nil {
			_, writeErr = out.Write(line)
		}
	}
	// Bounds the open descriptors and goroutines a burst of requests can take.
	slots := make(chan struct{}, maxConcurrentOps)
	reader := bufio.NewReaderSize(in, maxLineBytes)
	for {
		line, tooLong, err := readLine(reader)
		if len(line) > 0 || tooLong {
			if tooLong {
				send(reply{Error: fmt.Sprintf("request longer than %d bytes", maxLineBytes), Code: "EINVAL"})
			} else {
				slots <- struct{}{}
				wg.Add(1)
				go func(line []byte) {
					defer func() { <-slots; wg.Done() }()
					send(handle(line))
				}(line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			wg.Wait()
			return err
		}
	}
	wg.Wait()
	return writeErr
}

// readLine returns the next line without its newline; an over-long line is
// skipped to its end and reported as tooLong, so one bad request cannot wedge the stream.
func readLine(r *bufio.Reader) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong = true
			continue
		}
		if !tooLong {
			line = append([]byte(nil), trimNewline(chunk)...)
		}
		return line, tooLong, err
	}
}

func trimNewline(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}

// handle turns one request line into its reply; it never panics on bad input.
func handle(line []byte) reply {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		// Answer with the id when only the other fields are bad, so the caller's request fails fast.
		var idOnly struct {
			ID int64 `json:"id"`
		}
		_ = json.Unmarshal(line, &idOnly)
		return reply{ID: idOnly.ID, Error: "malformed request: " + err.Error(), Code: "EINVAL"}
	}
	if req.ID == nil {
		return reply{Error: "request has no id", Code: "EINVAL"}
	}
	id := *req.ID
	invalid := func(msg string) reply { return reply{ID: id, Error: msg, Code: "EINVAL"} }
	switch {
	case req.Op != "extents" && req.Op != "punch":
		return invalid(fmt.Sprintf("unknown op %q", req.Op))
	case req.Path == "":
		return invalid("path is missing")
	case req.Offset == nil || *req.Offset < 0:
		return invalid("offset must be a non-negative integer")
	case req.Length == nil || *req.Length < 0:
		return invalid("length must be a non-negative integer")
	case *req.Length > math.MaxInt64-*req.Offset:
		return invalid("offset + length overflows")
	}
	if req.Op == "extents" {
		extents, err := extents(req.Path, *req.Offset, *req.Length)
		if err != nil {
			return failure(id, err)
		}
		return reply{ID: id, Extents: &extents}
	}
	if err := punch(req.Path, *req.Offset, *req.Length); err != nil {
		return failure(id, err)
	}
	return reply{ID: id}
}

// extents lists the allocated ranges of the file inside [offset, offset+length),
// ascending and merged. Filesystems without SEEK_DATA report the whole file as data.
func extents(path string, offset, length int64) ([][2]int64, error) {
	result := [][2]int64{}
	if length == 0 {
		return result, nil
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	end := offset + length
	for pos := offset; pos < end; {
		data, err := syscall.Seek(fd, pos, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // no data at or after pos
		}
		if err != nil {
			return nil, &os.PathError{Op: "lseek SEEK_DATA", Path: path, Err: err}
		}
		if data >= end {
			break
		}
		hole, err := syscall.Seek(fd, data, seekHole)
		if err != nil {
			return nil, &os.PathError{Op: "lseek SEEK_HOLE", Path: path, Err: err}
		}
		hole = min(hole, end)
		if hole <= data {
			break // the file shrank between the two calls
		}
		if n := len(result); n > 0 && result[n-1][0]+result[n-1][1] == data {
			result[n-1][1] += hole - data
		} else {
			result = append(result, [2]int64{data, hole - data})
		}
		pos = hole
	}
	return result, nil
}

// punch deallocates [offset, offset+length) without changing the file size;
// reads of the range return zeroes afterwards.
func punch(path string, offset, length int64) error {
	if length == 0 {
		return nil // fallocate refuses a zero length; there is nothing to do
	}
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	for {
		err = syscall.Fallocate(fd, fallocKeepSize|fallocPunchHole, offset, length)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "fallocate PUNCH_HOLE", Path: path, Err: err}
	}
	return nil
}

func failure(id int64, err error) reply {
	code := "EIO"
	var errno syscall.Errno
	if errors.As(err, &errno) {
		code = errnoName(errno)
	}
	return reply{ID: id, Error: err.Error(), Code: code}
}

// The errno names Node.js uses for err.code; others become "EIO", which the
// data plane treats as a failed replica anyway.
var errnoNames = map[syscall.Errno]string{
	syscall.EACCES:       "EACCES",
	syscall.EBADF:        "EBADF",
	syscall.EBUSY:        "EBUSY",
	syscall.EDQUOT:       "EDQUOT",
	syscall.EFBIG:        "EFBIG",
	syscall.EINTR:        "EINTR",
	syscall.EINVAL:       "EINVAL",
	syscall.EIO:          "EIO",
	syscall.EISDIR:       "EISDIR",
	syscall.ELOOP:        "ELOOP",
	syscall.EMFILE:       "EMFILE",
	syscall.ENAMETOOLONG: "ENAMETOOLONG",
	syscall.ENFILE:       "ENFILE",
	syscall.ENODEV:       "ENODEV",
	syscall.ENOENT:       "ENOENT",
	syscall.ENOMEM:       "ENOMEM",
	syscall.ENOSPC:       "ENOSPC",
	syscall.ENOSYS:       "ENOSYS",
	syscall.ENOTDIR:      "ENOTDIR",
	syscall.ENXIO:        "ENXIO",
	syscall.EOPNOTSUPP:   "EOPNOTSUPP",
	syscall.EOVERFLOW:    "EOVERFLOW",
	syscall.EPERM:        "EPERM",
	syscall.EROFS:        "EROFS",
	syscall.ESPIPE:       "ESPIPE",
	syscall.ETXTBSY:      "ETXTBSY",
}

func errnoName(errno syscall.Errno) string {
	if name, ok := errnoNames[errno]; ok {
		return name
	}
	return "EIO"
}
