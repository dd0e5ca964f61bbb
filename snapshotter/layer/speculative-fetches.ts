// How far fetches nobody waits for yet reach: the bytes after a read miss,
// the rest of a file a program has started to read (ELF objects are paged in
// out of order), and the other small files of a directory it has started to
// read from. A start-up reads one file after another, each miss a round trip
// to the registry with the link mostly idle in between (docs/benchmarks.md:
// 79 sequential requests, the link busy a third of the time), so these run as
// speculative jobs of the fetch scheduler (prefetch/scheduler.ts), beside the
// reads that wait and never in front of them.

/**
 * After a miss, the units that follow it in the blob, up to this many
 * compressed bytes: files of one directory sit together in the blob and are
 * read together (an interpreter importing modules).
 */
export const READ_AHEAD_BYTES = 512 << 10;
/**
 * A file's first read also fetches the rest of it, up to this many compressed
 * bytes: programs read most of what they open, and ELF objects are paged in
 * out of order (python3's start-up faulted its 6.7 MB binary in ten scattered
 * reads, each a round trip).
 */
export const FILE_AHEAD_BYTES = 8 << 20;
/**
 * The first read of a small file in a directory also fetches the directory's
 * other small files, nearest in layer order first, up to this many compressed
 * bytes: an interpreter imports module after module from one directory
 * (python3's start-up missed 13 times in one `__pycache__`), while binaries
 * and libraries beside each other are mostly not used together.
 */
export const DIR_AHEAD_BYTES = 2 << 20;
/** What counts as a small file for DIR_AHEAD_BYTES. */
export const SMALL_FILE_BYTES = 256 << 10;
/** Compressed bytes of one speculative request at most, so a read joining it waits little longer than for its own unit. */
export const SPECULATIVE_REQUEST_BYTES = 512 << 10;
