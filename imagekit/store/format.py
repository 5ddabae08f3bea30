"""Constants of the repository format; the names are those of ``docs/format.md``."""

from __future__ import annotations

from typing import Final

#: The ``config`` version this code reads and writes.
REPOSITORY_VERSION: Final = 1
REPOSITORY_FORMAT: Final = "imagekit-repository"

#: 512 KiB: the EBS snapshot block size, so changed-block lists map one-to-one onto chunks.
CHUNK_SIZE: Final = 524_288

#: 32 MiB: a 1 TiB volume is a few thousand objects, and the three packs ingest holds at most (two
#: being written, one filling) stay far below the 256 MiB memory budget.
PACK_TARGET_SIZE: Final = 32 << 20

#: zstd level 1. Any level decodes the same (the level is the writer's choice, not part of the
#: format). Measured on the benchmark disks (``make bench``, two cores): the day-1 disk's chunks
#: compress to 503.5 MiB in 1.46 CPU-seconds at level 1 and to 486.5 MiB in 2.08 at level 3, and a
#: full ingest takes 3.0 CPU-seconds and 1.8 s at level 1 against 3.8 and 2.2 s at level 3: 3.5 %
#: more stored for a fifth less CPU. An incremental stores only 0.6 % more (its new chunks are
#: mostly random data), and incrementals are what a nightly export writes.
ZSTD_LEVEL: Final = 1

# Object names.
CONFIG: Final = "config"
KEYS_PREFIX: Final = "keys/"
DATA_PREFIX: Final = "data/"
INDEX_PREFIX: Final = "index/"
IMAGES_PREFIX: Final = "images/"
LOCKS_PREFIX: Final = "locks/"

# Version and type bytes.
MASTER_KEY_VERSION: Final = 0x01
#: Key slot documents: 2 carries a MAC (``docs/format.md`` § Slot MAC); 1 (no MAC, written before
#: slot MACs) is still read, and trusted only where its keys open to the expected fingerprint.
SLOT_VERSION: Final = 2
SLOT_VERSION_LEGACY: Final = 1
SLOT_TYPE_X25519: Final = 0x01
SLOT_TYPE_SCRYPT: Final = 0x02
META_VERSION: Final = 0x01
KIND_INDEX: Final = b"I"
KIND_MANIFEST: Final = b"M"
KIND_PACK_HEADER: Final = b"H"
KIND_LOCK: Final = b"L"
BLOB_RAW: Final = 0x00
BLOB_ZSTD: Final = 0x01
ACCESS_WRITE: Final = 0x01
ACCESS_READ: Final = 0x02

# Sizes of fixed fields.
ID_SIZE: Final = 32  # chunk ids, pack ids, index and image ids (BLAKE3)
REPOSITORY_ID_SIZE: Final = 16
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 12
TAG_SIZE: Final = 16
SEALED_DATA_KEY_SIZE: Final = 32 + KEY_SIZE + TAG_SIZE  # ephemeral public key, key, tag
ENTRY_SIZE: Final = ID_SIZE + 4 + 4 + 4
SLOT_ID_SIZE: Final = 16  # keys/<slot id>: random, so two grants never collide
SLOT_MAC_SIZE: Final = 32

# Labels (HKDF info strings and AAD prefixes).
INFO_CHUNK_ID: Final = b"imagekit/v1/chunk-id"
INFO_METADATA: Final = b"imagekit/v1/metadata"
INFO_SEAL: Final = b"imagekit/v1/seal"
INFO_FINGERPRINT: Final = b"imagekit/v1/fingerprint"
AAD_META: Final = b"imagekit/v1/meta"
AAD_SLOT: Final = b"imagekit/v1/key-slot"
INFO_SLOT_MAC_WRITE: Final = b"imagekit/v1/slot-mac/write"
INFO_SLOT_MAC_READ: Final = b"imagekit/v1/slot-mac/read"
LABEL_SLOT_MAC: Final = b"imagekit/v1/slot-mac"
AAD_IDENTITY: Final = b"imagekit/v1/identity"

#: scrypt cost: 2^15 x 8 x 128 B = 32 MiB and ~0.1 s, the usual interactive setting.
SCRYPT_N: Final = 1 << 15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
#: The most a key slot or identity file may ask of scrypt. Their parameters are read before
#: anything authenticates them, so a planted slot could otherwise ask for terabytes: 2^20 x 8 x
#: 128 B = 1 GiB of memory (32x the default), and p x N x r at most 2^24 (~10 s of work).
SCRYPT_MAX_N: Final = 1 << 20
SCRYPT_MAX_R: Final = 32
SCRYPT_MAX_P: Final = 16
SCRYPT_MAX_WORK: Final = 1 << 24  # n * r * p
SCRYPT_MAX_MEMORY: Final = 1 << 30  # 128 * n * r

#: A lock holder rewrites its lock this often; a lock not rewritten for LOCK_STALE_AFTER is dead.
LOCK_REFRESH_INTERVAL: Final = 5 * 60.0
LOCK_STALE_AFTER: Final = 30 * 60.0

RECIPIENT_PREFIX: Final = "ikr1"
FINGERPRINT_PREFIX: Final = "ikf1"
#: 20 bytes (160 bits): forging keys with a given fingerprint is a second-preimage search of
#: 2^160; 32 base32 characters are still comparable by eye.
FINGERPRINT_SIZE: Final = 20

# Decompression limits per object kind (``docs/format.md`` § Limits). Every limit is checked
# against the size a zstd frame declares *before* anything is allocated, and against the bytes
# actually produced while streaming, so a small forged frame cannot claim gigabytes.
#: A blob body is one chunk.
MAX_CHUNK_PLAIN: Final = CHUNK_SIZE
#: A pack header: 80 + 4 + 44 bytes per blob; a 32 MiB pack of 4 KiB blobs has ~8,200.
MAX_PACK_HEADER_PLAIN: Final = 16 << 20
#: A manifest: 36 bytes per non-zero chunk; 64 TiB of EBS volume is 128 Mi chunks = 4.5 GiB,
#: far more than any AMI; 1 GiB holds 29 Mi chunks (15 TiB of non-zero data).
MAX_MANIFEST_PLAIN: Final = 1 << 30
#: An index object: 44 bytes per chunk; one session's index of 15 TiB of new data fits.
MAX_INDEX_PLAIN: Final = 1 << 30
#: A lock is a small JSON document.
MAX_LOCK_PLAIN: Final = 64 << 10
