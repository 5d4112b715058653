//! `Range` requests on a stored file (RFC 9110 §14), so a browser can seek a video: one
//! range (206 with `Content-Range`), several (206 `multipart/byteranges`), suffix ranges
//! (`-500`: the last 500 bytes). A header this server does not understand is ignored (the
//! whole file, as the RFC allows); one whose every range starts past the end is 416.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// More ranges than this in one request are not worth serving apart: the whole file goes.
pub const MAX_RANGES: usize = 16;
/// Largest piece read from the file at once.
const CHUNK: usize = 64 * 1024;

/// What a request's `Range` asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Ranges {
    Whole,
    /// Half-open `[start, end)` spans, in the order asked, each within the file.
    Parts(Vec<(u64, u64)>),
    Unsatisfiable,
}

pub fn parse(header: Option<&str>, size: u64) -> Ranges {
    let Some(spec) = header.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    for one in spec.split(',') {
        match one_range(one.trim(), size) {
            Some(Some(span)) => parts.push(span),
            Some(None) => {}
            None => return Ranges::Whole,
        }
    }
    match parts.as_slice() {
        [] => Ranges::Unsatisfiable,
        [(0, end)] if *end == size => Ranges::Whole,
        _ if parts.len() > MAX_RANGES => Ranges::Whole,
        _ => Ranges::Parts(parts),
    }
}

/// One `first-last`, `first-` or `-suffix`: `None` if malformed, `Some(None)` if it starts
/// past the end.
fn one_range(spec: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let suffix: u64 = last.parse().ok().filter(|suffix| *suffix > 0)?;
        return Some((size > 0).then(|| (size.saturating_sub(suffix), size)));
    }
    let start: u64 = first.parse().ok()?;
    let end = if last.is_empty() {
        size
    } else {
        let last: u64 = last.parse().ok().filter(|last| *last >= start)?;
        (last + 1).min(size)
    };
    Some((start < size).then_some((start, end)))
}

/// A piece of a multipart body: bytes made here, or a span of the file.
enum Segment {
    Bytes(Bytes),
    File(u64, u64),
}

/// The `multipart/byteranges` body of `parts` of `file`, and its length. Reads the file a
/// chunk at a time, so a response holds at most one chunk in memory.
pub fn multipart(
    file: tokio::fs::File,
    parts: &[(u64, u64)],
    content_type: &str,
    size: u64,
    boundary: &str,
) -> (
    u64,
    impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
) {
    let mut segments = VecDeque::new();
    for &(start, end) in parts {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n",
            end - 1
        );
        segments.push_back(Segment::Bytes(Bytes::from(head)));
        segments.push_back(Segment::File(start, end - start));
    }
    segments.push_back(Segment::Bytes(Bytes::from(format!(
        "\r\n--{boundary}--\r\n"
    ))));
    let length = segments
        .iter()
        .map(|segment| match segment {
            Segment::Bytes(bytes) => bytes.len() as u64,
            Segment::File(_, len) => *len,
        })
        .sum();
    let body =
        futures_util::stream::try_unfold((file, segments), |(mut file, mut segments)| async move {
            let Some(segment) = segments.pop_front() else {
                return Ok(None);
            };
            let chunk = match segment {
                Segment::Bytes(bytes) => bytes,
                Segment::File(start, len) => {
                    file.seek(std::io::SeekFrom::Start(start)).await?;
                    let want = len.min(CHUNK as u64) as usize;
                    let mut chunk = BytesMut::zeroed(want);
                    file.read_exact(&mut chunk).await?;
                    if len > want as u64 {
                        segments.push_front(Segment::File(start + want as u64, len - want as u64));
                    }
                    chunk.freeze()
                }
            };
            Ok(Some((chunk, (file, segments))))
        });
    (length, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_the_rfc_says_and_unknown_headers_ignored() {
        let range = |r: &str| parse(Some(r), 100);
        assert_eq!(parse(None, 100), Ranges::Whole);
        assert_eq!(range("bytes=0-9"), Ranges::Parts(vec![(0, 10)]));
        assert_eq!(range("bytes=90-"), Ranges::Parts(vec![(90, 100)]));
        assert_eq!(range("bytes=-5"), Ranges::Parts(vec![(95, 100)]));
        assert_eq!(range("bytes=50-500"), Ranges::Parts(vec![(50, 100)]));
        assert_eq!(range("bytes=0-99"), Ranges::Whole);
        assert_eq!(range("bytes=0-1, 5-6"), Ranges::Parts(vec![(0, 2), (5, 7)]));
        // A range past the end among good ones is left out; alone, it is 416.
        assert_eq!(range("bytes=200-,0-0"), Ranges::Parts(vec![(0, 1)]));
        assert_eq!(range("bytes=100-"), Ranges::Unsatisfiable);
        assert_eq!(range("bytes=100-200,150-"), Ranges::Unsatisfiable);
        let many = format!("bytes={}", vec!["1-1"; MAX_RANGES + 1].join(","));
        assert_eq!(range(&many), Ranges::Whole);
        for ignored in [
            "items=0-1",
            "bytes=9-2",
            "bytes=-0",
            "bytes=x-",
            "bytes=1-2,y",
        ] {
            assert_eq!(range(ignored), Ranges::Whole, "{ignored}");
        }
        assert_eq!(parse(Some("bytes=-5"), 0), Ranges::Unsatisfiable);
    }
}
