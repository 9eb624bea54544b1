//! Sorting a report's objects into key order with bounded memory.
//!
//! A report lists its objects in no documented order, spread over many data files, and a
//! billion-object report does not fit in memory. Objects are buffered up to a byte budget; a
//! full buffer is sorted and written to a run file in a spill folder; at the end the runs (and
//! what is still buffered) are merged a key at a time. Memory is the budget plus one read
//! buffer per run merged at once; runs beyond [`MAX_FAN_IN`] are first merged into longer ones.
//! Keys come out in UTF-8 byte order (the order of both bucket listings), each once.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use chrono::DateTime;

use crate::data::Entry;

/// Runs merged at once: one read buffer each.
pub const MAX_FAN_IN: usize = 64;
/// Each run's read buffer while merging.
const RUN_BUFFER: usize = 64 * 1024;
/// What an object costs in the buffer's own allocation (its key and ETag are allocations apart).
const ENTRY_SIZE: usize = std::mem::size_of::<Entry>();

/// What a string's allocation costs the process: glibc's malloc rounds a request plus its 8-byte
/// header up to 16 bytes, 32 at least. Counting only the bytes would let a budget of short keys
/// hold twice what it says.
fn heap_bytes(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    (text.len() + 8).div_ceil(16).max(2) * 16
}

/// Where runs are written and how much is buffered before one is.
#[derive(Debug, Clone)]
pub struct SortSettings {
    /// A folder for this sort's runs is made inside it, and removed with the sort.
    pub spill_dir: PathBuf,
    /// Bytes of objects held before a run is written.
    pub memory_budget: usize,
}

/// A folder of run files, removed when dropped.
#[derive(Debug)]
struct SpillFolder {
    path: PathBuf,
    next: usize,
}

impl SpillFolder {
    fn new(parent: &Path) -> io::Result<SpillFolder> {
        let unique = format!(
            "yuba-inventory-sort-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        );
        let path = parent.join(unique);
        std::fs::create_dir_all(&path)?;
        Ok(SpillFolder { path, next: 0 })
    }

    fn next_run(&mut self) -> PathBuf {
        self.next += 1;
        self.path.join(format!("run-{:06}", self.next))
    }
}

impl Drop for SpillFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Objects pushed in any order, taken out in key order.
#[derive(Debug)]
pub struct ExternalSort {
    settings: SortSettings,
    buffer: Vec<Entry>,
    buffered: usize,
    folder: Option<SpillFolder>,
    runs: Vec<PathBuf>,
}

impl ExternalSort {
    pub fn new(settings: SortSettings) -> ExternalSort {
        ExternalSort {
            settings,
            buffer: Vec::new(),
            buffered: 0,
            folder: None,
            runs: Vec::new(),
        }
    }

    pub fn push(&mut self, entry: Entry) -> io::Result<()> {
        self.buffered += heap_bytes(&entry.key) + heap_bytes(&entry.etag);
        self.buffer.push(entry);
        // The buffer's capacity, not its length: it grows by doubling.
        if self.buffered + self.buffer.capacity() * ENTRY_SIZE >= self.settings.memory_budget {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs written so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn folder(&mut self) -> io::Result<&mut SpillFolder> {
        if self.folder.is_none() {
            self.folder = Some(SpillFolder::new(&self.settings.spill_dir)?);
        }
        Ok(self.folder.as_mut().expect("made above"))
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut entries = std::mem::take(&mut self.buffer);
        self.buffered = 0;
        entries.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let path = self.folder()?.next_run();
        let mut run = BufWriter::new(File::create(&path)?);
        for entry in &entries {
            write_entry(&mut run, entry)?;
        }
        run.flush()?;
        self.runs.push(path);
        Ok(())
    }

    /// The objects in key order, each key once (of the same key listed twice, the one last
    /// modified is kept).
    pub fn finish(mut self) -> io::Result<Sorted> {
        self.buffer.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        // Merge runs into longer ones until the last merge has few enough to read at once.
        while self.runs.len() + 1 > MAX_FAN_IN {
            let group: Vec<PathBuf> = self.runs.drain(..MAX_FAN_IN).collect();
            let path = self.folder()?.next_run();
            let mut merged = Merge::new(open_runs(&group)?, Vec::new())?;
            let mut run = BufWriter::new(File::create(&path)?);
            while let Some(entry) = merged.next_entry()? {
                write_entry(&mut run, &entry)?;
            }
            run.flush()?;
            for done in group {
                std::fs::remove_file(done)?;
            }
            self.runs.push(path);
        }
        let merge = Merge::new(open_runs(&self.runs)?, std::mem::take(&mut self.buffer))?;
        Ok(Sorted {
            merge,
            duplicates: 0,
            _folder: self.folder.take(),
        })
    }
}

fn open_runs(paths: &[PathBuf]) -> io::Result<Vec<BufReader<File>>> {
    paths
        .iter()
        .map(|path| Ok(BufReader::with_capacity(RUN_BUFFER, File::open(path)?)))
        .collect()
}

/// The objects in key order.
#[derive(Debug)]
pub struct Sorted {
    merge: Merge,
    duplicates: u64,
    /// Kept until the runs are read.
    _folder: Option<SpillFolder>,
}

impl Sorted {
    /// Keys listed more than once, so far (a report is an eventually consistent snapshot).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

impl Iterator for Sorted {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        let mut entry = match self.merge.next_entry() {
            Ok(entry) => entry?,
            Err(error) => return Some(Err(error)),
        };
        loop {
            match self.merge.peek_key() {
                Some(key) if key == entry.key => {}
                _ => return Some(Ok(entry)),
            }
            self.duplicates += 1;
            match self.merge.next_entry() {
                Ok(Some(other)) if other.last_modified > entry.last_modified => entry = other,
                Ok(_) => {}
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// A k-way merge of sorted runs and the sorted in-memory rest.
#[derive(Debug)]
struct Merge {
    runs: Vec<BufReader<File>>,
    memory: std::vec::IntoIter<Entry>,
    /// Each source's next entry, smallest key first; the source is its run's index, or
    /// `runs.len()` for memory.
    heads: BinaryHeap<Reverse<Head>>,
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    entry: Entry,
    source: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.entry.key.as_str(), self.source).cmp(&(other.entry.key.as_str(), other.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Merge {
    fn new(runs: Vec<BufReader<File>>, memory: Vec<Entry>) -> io::Result<Merge> {
        let mut merge = Merge {
            heads: BinaryHeap::with_capacity(runs.len() + 1),
            runs,
            memory: memory.into_iter(),
        };
        for source in 0..=merge.runs.len() {
            merge.refill(source)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, source: usize) -> io::Result<()> {
        let next = match self.runs.get_mut(source) {
            Some(run) => read_entry(run)?,
            None => self.memory.next(),
        };
        if let Some(entry) = next {
            self.heads.push(Reverse(Head { entry, source }));
        }
        Ok(())
    }

    fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let Some(Reverse(Head { entry, source })) = self.heads.pop() else {
            return Ok(None);
        };
        self.refill(source)?;
        Ok(Some(entry))
    }

    fn peek_key(&self) -> Option<&str> {
        self.heads
            .peek()
            .map(|Reverse(head)| head.entry.key.as_str())
    }
}

/// A run's record: the key and ETag length-prefixed, the size, and the last-modified time in
/// milliseconds (`i64::MIN` for none). Runs live only as long as their sort, on this machine,
/// so the encoding needs no version.
fn write_entry(out: &mut impl Write, entry: &Entry) -> io::Result<()> {
    write_text(out, &entry.key)?;
    write_text(out, &entry.etag)?;
    out.write_all(&entry.size.to_le_bytes())?;
    let millis = entry
        .last_modified
        .map_or(i64::MIN, |time| time.timestamp_millis());
    out.write_all(&millis.to_le_bytes())
}

fn write_text(out: &mut impl Write, text: &str) -> io::Result<()> {
    let len = u32::try_from(text.len()).map_err(io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(text.as_bytes())
}

fn read_entry(input: &mut impl Read) -> io::Result<Option<Entry>> {
    let mut len = [0; 4];
    match input.read_exact(&mut len) {
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let key = read_text(input, u32::from_le_bytes(len))?;
    input.read_exact(&mut len)?;
    let etag = read_text(input, u32::from_le_bytes(len))?;
    let mut number = [0; 8];
    input.read_exact(&mut number)?;
    let size = u64::from_le_bytes(number);
    input.read_exact(&mut number)?;
    let millis = i64::from_le_bytes(number);
    Ok(Some(Entry {
        key,
        etag,
        size,
        last_modified: (millis != i64::MIN)
            .then(|| DateTime::from_timestamp_millis(millis))
            .flatten(),
    }))
}

fn read_text(input: &mut impl Read, len: u32) -> io::Result<String> {
    let mut bytes = vec![0; len as usize];
    input.read_exact(&mut bytes)?;
    String::from_utf8(bytes).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;

    use super::*;

    fn entry(key: &str, millis: i64) -> Entry {
        Entry {
            key: key.to_owned(),
            size: key.len() as u64,
            etag: format!("etag-{key}"),
            last_modified: DateTime::from_timestamp_millis(millis),
        }
    }

    fn sort(entries: Vec<Entry>, budget: usize, spill_dir: &Path) -> (Vec<Entry>, usize, u64) {
        let mut sort = ExternalSort::new(SortSettings {
            spill_dir: spill_dir.to_owned(),
            memory_budget: budget,
        });
        for entry in entries {
            sort.push(entry).unwrap();
        }
        let runs = sort.runs();
        let mut sorted = sort.finish().unwrap();
        let out: Vec<Entry> = sorted.by_ref().map(Result::unwrap).collect();
        (out, runs, sorted.duplicates())
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("yuba-sort-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Keys that trip naive orders: one huge prefix, unicode (sorted by UTF-8 bytes, not by
    /// UTF-16 or by char), keys that differ only in their last byte, a key that is a prefix of
    /// another.
    fn awkward_keys() -> Vec<String> {
        let mut keys: Vec<String> = (0..3000).map(|i| format!("big/{i:05}.jpg")).collect();
        keys.extend(
            [
                "é.jpg",
                "e\u{301}.jpg",
                "\u{ffff}",
                "\u{10000}",
                "z",
                "a",
                "a0",
                "a/",
            ]
            .map(String::from),
        );
        keys.extend((0..=9).map(|i| format!("last-byte-{i}")));
        keys
    }

    #[test]
    fn a_sort_that_spills_gives_every_key_once_in_byte_order_and_leaves_no_file() {
        let dir = scratch("spill");
        let mut keys = awkward_keys();
        let mut entries: Vec<Entry> = keys.iter().map(|key| entry(key, 1)).collect();
        entries.shuffle(&mut rand::rng());
        // About 40 objects per run: ~80 runs, more than one merge reads at once.
        let (out, runs, duplicates) = sort(entries, 40 * (ENTRY_SIZE + 64), &dir);
        assert!(runs > MAX_FAN_IN, "{runs} runs");
        keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let sorted: Vec<&str> = out.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(sorted, keys);
        assert_eq!(out[0], entry(&keys[0], 1), "fields survive the run files");
        assert_eq!(duplicates, 0);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "the spill folder is removed"
        );
    }

    #[test]
    fn a_sort_within_its_budget_writes_nothing() {
        let dir = scratch("memory");
        let (out, runs, _) = sort(vec![entry("b", 1), entry("a", 1)], 1 << 20, &dir);
        assert_eq!(runs, 0);
        assert_eq!(
            out.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn a_key_listed_twice_is_kept_once_as_last_modified() {
        let dir = scratch("duplicates");
        let entries = vec![entry("k", 5), entry("a", 1), entry("k", 9), entry("k", 7)];
        for budget in [1, 1 << 20] {
            let (out, _, duplicates) = sort(entries.clone(), budget, &dir);
            assert_eq!(out, [entry("a", 1), entry("k", 9)], "budget {budget}");
            assert_eq!(duplicates, 2);
        }
    }

    #[test]
    fn an_entry_without_a_time_survives_a_run_file() {
        let mut bytes = Vec::new();
        let timeless = Entry {
            last_modified: None,
            ..entry("k", 0)
        };
        write_entry(&mut bytes, &timeless).unwrap();
        let mut input = bytes.as_slice();
        assert_eq!(read_entry(&mut input).unwrap(), Some(timeless));
        assert_eq!(read_entry(&mut input).unwrap(), None);
    }
}
