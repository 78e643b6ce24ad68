package data_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"lode.dev/lode/internal/data"
)

// A directory goes up sealed and comes back whole; the store only ever sees sealed chunks.
func Example() {
	ctx := context.Background()
	tmp, _ := os.MkdirTemp("", "lode-example")
	defer os.RemoveAll(tmp)
	src := filepath.Join(tmp, "src")
	os.MkdirAll(filepath.Join(src, "conf"), 0o755)
	os.WriteFile(filepath.Join(src, "conf", "train.yaml"), []byte("lr: 0.1\n"), 0o644)

	// The control plane: a key-encryption key in a local file, a bucket on disk.
	kekURL, _ := data.EnsureLocalKey(filepath.Join(tmp, "keys", "kek"))
	keyring, _ := data.OpenKeyring(ctx, kekURL)
	defer keyring.Close()
	bucket, _ := data.OpenBucket(ctx, "file://"+filepath.ToSlash(filepath.Join(tmp, "blobs")))
	defer bucket.Close()
	store := data.NewBucketStore(bucket)

	// One data key per object; only its wrapped form is stored.
	dataKey, wrapped, _ := keyring.NewDataKey(ctx)
	sealer, _ := data.NewSealer("obj-example", dataKey)
	res, err := data.Push(ctx, store, sealer, "obj-example", src, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("pushed %d file, %d bytes\n", res.Files, res.Bytes)

	// Later, elsewhere: unwrap the key and pull.
	key, _ := keyring.Unwrap(ctx, wrapped)
	sealer, _ = data.NewSealer("obj-example", key)
	dst := filepath.Join(tmp, "dst")
	if _, err := data.Pull(ctx, store, sealer, "obj-example", res.Manifest, dst, nil); err != nil {
		fmt.Println(err)
		return
	}
	b, _ := os.ReadFile(filepath.Join(dst, "conf", "train.yaml"))
	fmt.Printf("pulled conf/train.yaml: %s", b)
	// Output:
	// pushed 1 file, 8 bytes
	// pulled conf/train.yaml: lr: 0.1
}
