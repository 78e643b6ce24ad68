// Package data owns chunking, envelope encryption and moving directories to and from the blob
// store.
//
// A directory tree becomes an object: its files are cut into fixed-size chunks, each sealed
// with AES-256-GCM under the object's data key and stored under an address that is an HMAC of
// its content, and a sealed manifest lists the tree. Data keys are wrapped by a key-encryption
// key held in a Keyring (gocloud.dev/secrets), so the blob store and the control plane only
// ever hold sealed bytes and wrapped keys: nothing plaintext leaves the job.
//
// Push and Pull move trees; a ChunkStore is where the sealed bytes go (BucketStore over a
// gocloud.dev/blob bucket on the control plane, an HTTP client elsewhere).
package data
