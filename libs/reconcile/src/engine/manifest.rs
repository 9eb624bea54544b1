//! The pages of a manifest run: the keys a manifest names, a page at a time, looked up in both
//! buckets.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::sync::Arc;

use futures::{StreamExt, stream};
use tokio::sync::mpsc;

use super::listing::ListingFailure;
use super::pages::{PageReceiver, PairPage};
use super::{Manifest, ReconcileError, Reconciler, RunOptions};
use crate::checkpoint::Position;
use crate::classify::Pair;

/// The keys of a manifest, one per line, read a page at a time.
struct ManifestKeys {
    manifest: Manifest,
    lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send>,
    /// Lines read so far, those skipped included: where the run is once their page is done.
    consumed: u64,
    /// Lines a resumed run finished before.
    skip: u64,
}

impl ManifestKeys {
    fn open(
        manifest: Manifest,
        position: Option<Position>,
    ) -> Result<ManifestKeys, ReconcileError> {
        let lines: Box<dyn Iterator<Item = std::io::Result<String>> + Send> = match &manifest {
            Manifest::File(path) => match File::open(path) {
                Ok(file) => Box::new(BufReader::new(file).lines()),
                Err(source) => {
                    let path = path.clone();
                    return Err(ReconcileError::Manifest { path, source });
                }
            },
            Manifest::Keys(keys) => {
                let keys = Arc::clone(keys);
                Box::new((0..keys.len()).map(move |i| Ok(keys[i].clone())))
            }
        };
        let skip = match position {
            Some(Position::Lines(lines)) => lines,
            _ => 0,
        };
        Ok(ManifestKeys {
            manifest,
            lines,
            consumed: 0,
            skip,
        })
    }

    /// The next page's keys, each once, and whether it is the manifest's last page.
    fn next_page(&mut self, page_size: usize) -> Result<(Vec<String>, bool), ReconcileError> {
        let mut keys = Vec::with_capacity(page_size);
        while keys.len() < page_size {
            match self.lines.next() {
                None => break,
                Some(Err(source)) => {
                    return Err(ReconcileError::ManifestLine {
                        path: self.manifest.to_string().into(),
                        line: self.consumed + 1,
                        source,
                    });
                }
                Some(Ok(line)) => {
                    self.consumed += 1;
                    let key = line.strip_suffix('\r').unwrap_or(&line);
                    if self.consumed > self.skip && !key.is_empty() {
                        keys.push(key.to_owned());
                    }
                }
            }
        }
        let last = keys.len() < page_size;
        // The same key twice in one page would be repaired twice, at once.
        let mut seen = HashSet::new();
        keys.retain(|key| seen.insert(key.clone()));
        Ok((keys, last))
    }
}

impl Reconciler {
    /// Pages of the keys a manifest names, looked up in both buckets.
    pub(super) fn manifest_pages(
        &self,
        manifest: Manifest,
        position: Option<Position>,
        options: &RunOptions,
    ) -> Result<PageReceiver, ReconcileError> {
        let mut manifest = ManifestKeys::open(manifest, position)?;
        let (pages, receiver) = mpsc::channel(1);
        let page_size = usize::try_from(options.page_size).unwrap_or(1000);
        let concurrency = options.concurrency.max(1);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let page = match manifest.next_page(page_size) {
                    Ok((keys, last)) => this
                        .look_up_page(keys, manifest.consumed, concurrency)
                        .await
                        .map(|page| (page, last)),
                    Err(error) => Err(error),
                };
                match page {
                    Ok((page, last)) => {
                        if pages.send(Ok(page)).await.is_err() || last {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = pages.send(Err(error)).await;
                        return;
                    }
                }
            }
        });
        Ok(receiver)
    }

    /// A page of manifest keys, looked up; `consumed`, the manifest lines done once it is.
    async fn look_up_page(
        &self,
        keys: Vec<String>,
        consumed: u64,
        concurrency: usize,
    ) -> Result<PairPage, ReconcileError> {
        let looked_up: Vec<Result<Pair, ReconcileError>> = stream::iter(keys)
            .map(|key| self.look_up(key))
            .buffered(concurrency)
            .collect()
            .await;
        let mut page = PairPage {
            position: Some(Position::Lines(consumed)),
            ..PairPage::default()
        };
        for pair in looked_up {
            match pair? {
                // A manifest made from a replica listing names variants and upload parts too:
                // they are told apart as in a listing run.
                pair if pair.source.is_none()
                    && pair
                        .replica
                        .as_ref()
                        .is_some_and(|replica| page.leaves_out(replica)) => {}
                pair => page.push(pair),
            }
        }
        Ok(page)
    }

    /// One manifest key in both buckets.
    async fn look_up(&self, key: String) -> Result<Pair, ReconcileError> {
        let (head, replica) = tokio::join!(
            self.s3.head(&self.buckets.source, &key),
            self.gcs.objects().get(&self.buckets.replica, &key)
        );
        let head = head.map_err(|error| {
            let what = format!("looking up s3://{}/{key}", self.buckets.source);
            ReconcileError::Lookup(ListingFailure::s3(&what, error))
        })?;
        let replica = replica.map_err(|error| {
            let what = format!("looking up gs://{}/{key}", self.buckets.replica);
            ReconcileError::Lookup(ListingFailure::gcs(&what, error))
        })?;
        Ok(Pair {
            source: head.map(|head| head.into_listed(key.clone())),
            replica,
            key,
        })
    }
}
