// Command lipo joins thin macOS (Mach-O) binaries into one universal
// ("fat") binary, like Apple's `lipo -create`, for scripts/build-sidecar on
// machines without Xcode. (randall77/makefat does this too, but the module
// proxy does not serve it here.)
//
//	go run ./scripts/lipo OUT THIN...
package main

import (
	"debug/macho"
	"encoding/binary"
	"fmt"
	"os"
)

// align is the slice alignment Apple's lipo uses for arm64 (2^14), which
// also satisfies x86_64's 2^12.
const alignBits = 14

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: lipo OUT THIN THIN...")
		os.Exit(2)
	}
	if err := join(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "lipo:", err)
		os.Exit(1)
	}
}

func join(out string, thin []string) error {
	type slice struct {
		cpu, sub uint32
		data     []byte
		offset   uint32
	}
	var slices []slice
	offset := uint32(8 + 20*len(thin)) // fat header + one fat_arch per slice
	for _, path := range thin {
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f, err := macho.Open(path)
		if err != nil {
			return fmt.Errorf("%s is not a thin Mach-O binary: %w", path, err)
		}
		cpu, sub := uint32(f.Cpu), f.SubCpu
		f.Close()
		offset = (offset + 1<<alignBits - 1) &^ (1<<alignBits - 1)
		slices = append(slices, slice{cpu: cpu, sub: sub, data: data, offset: offset})
		offset += uint32(len(data))
	}
	buf := make([]byte, offset)
	binary.BigEndian.PutUint32(buf[0:], macho.MagicFat)
	binary.BigEndian.PutUint32(buf[4:], uint32(len(slices)))
	for i, s := range slices {
		h := buf[8+20*i:]
		binary.BigEndian.PutUint32(h[0:], s.cpu)
		binary.BigEndian.PutUint32(h[4:], s.sub)
		binary.BigEndian.PutUint32(h[8:], s.offset)
		binary.BigEndian.PutUint32(h[12:], uint32(len(s.data)))
		binary.BigEndian.PutUint32(h[16:], alignBits)
		copy(buf[s.offset:], s.data)
	}
	return os.WriteFile(out, buf, 0o755)
}
