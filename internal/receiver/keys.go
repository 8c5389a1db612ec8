package receiver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// KeyFile holds the manifest signing keys read from a file, one key per line. Two lines make
// two keys valid at once, for rotation without downtime. The file is read again whenever its
// modification time changes, so an updated Secret takes effect without a restart.
type KeyFile struct {
	Path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	keys    [][]byte
}

// NewKeyFile reads path and fails when it holds no key.
func NewKeyFile(path string) (*KeyFile, error) {
	k := &KeyFile{Path: path}
	if _, err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// Keys returns the current keys. When the file became unreadable or empty, the last good
// keys stay in force.
func (k *KeyFile) Keys() [][]byte {
	keys, _ := k.load()
	return keys
}

func (k *KeyFile) load() ([][]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	fi, err := os.Stat(k.Path)
	if err != nil {
		return k.keys, fmt.Errorf("manifest key file: %w", err)
	}
	if k.keys != nil && fi.ModTime().Equal(k.modTime) && fi.Size() == k.size {
		return k.keys, nil
	}
	data, err := os.ReadFile(k.Path)
	if err != nil {
		return k.keys, fmt.Errorf("manifest key file: %w", err)
	}
	keys, err := ParseKeys(data)
	if err != nil {
		return k.keys, fmt.Errorf("manifest key file %s: %w", k.Path, err)
	}
	k.keys, k.modTime, k.size = keys, fi.ModTime(), fi.Size()
	return keys, nil
}

// MinKeyBytes is the shortest key accepted.
const MinKeyBytes = 16

// ParseKeys splits data into keys, one per non-empty line.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) < MinKeyBytes {
			return nil, fmt.Errorf("key on line %d is shorter than %d bytes", i+1, MinKeyBytes)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in file")
	}
	return keys, nil
}
