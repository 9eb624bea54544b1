use std::ops::Range;

/// SendMessageBatch takes at most ten entries…
pub const MAX_BATCH_ENTRIES: usize = 10;
/// …whose bodies add up to at most 256 KiB.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Splits messages of the given body sizes, in order, into the fewest consecutive batches that
/// SQS accepts. A message too large to send at all gets a batch of its own (SQS will refuse it,
/// and the caller reports that entry alone).
pub fn pack_batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, &size) in sizes.iter().enumerate() {
        let entries = index - start;
        if entries > 0 && (entries == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            batches.push(start..index);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push(start..sizes.len());
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_go_ten_at_a_time() {
        assert_eq!(pack_batches(&[100; 25]), vec![0..10, 10..20, 20..25]);
        assert_eq!(pack_batches(&[]), Vec::<Range<usize>>::new());
    }

    #[test]
    fn batches_stay_under_the_byte_limit() {
        let sizes = [100 * 1024, 100 * 1024, 100 * 1024, 56 * 1024, 1];
        assert_eq!(pack_batches(&sizes), vec![0..2, 2..5]);
        for batch in pack_batches(&sizes) {
            assert!(sizes[batch].iter().sum::<usize>() <= MAX_BATCH_BYTES);
        }
    }

    #[test]
    fn an_oversized_message_stands_alone() {
        assert_eq!(
            pack_batches(&[10, MAX_BATCH_BYTES + 1, 10]),
            vec![0..1, 1..2, 2..3]
        );
    }
}
