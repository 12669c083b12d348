//! Ordered CGI/FastCGI parameters, encoded once as they are pushed.

use std::fmt;

use crate::record::{self, MAX_CONTENT_LEN, PARAMS};
use crate::FastCgiError;

/// Ordered name/value pairs (the CGI environment of one request).
///
/// Pairs are encoded into one buffer as they are pushed, and the buffer is
/// already cut into PARAMS-record-sized pieces at pair boundaries: PHP parses
/// each PARAMS record on its own, so a pair must never straddle two records.
#[derive(Clone, Default)]
pub struct Params {
    /// The encoded pairs, back to back.
    buf: Vec<u8>,
    /// End offsets in `buf` of every full record; the last record ends at `buf.len()`.
    cuts: Vec<usize>,
    /// Number of pairs.
    count: usize,
    /// First pair that cannot be sent to PHP: (name, encoded size).
    too_large: Option<(String, usize)>,
}

impl Params {
    /// Empty params.
    pub fn new() -> Params {
        Params::default()
    }

    /// Empty params with room for `bytes` encoded bytes (~1 KB covers a typical request).
    pub fn with_capacity(bytes: usize) -> Params {
        Params {
            buf: Vec::with_capacity(bytes),
            ..Params::default()
        }
    }

    /// Appends a pair. Duplicate names are kept; PHP lets the last one win.
    ///
    /// A pair bigger than one record (64 KiB) is remembered and makes
    /// [`crate::Connection::request`] fail with [`FastCgiError::ParamTooLarge`]
    /// before anything is sent.
    pub fn push(&mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Params {
        let (name, value) = (name.as_ref(), value.as_ref());
        let size = record::pair_size(name.len(), value.len());
        if size > MAX_CONTENT_LEN {
            if self.too_large.is_none() {
                let shown = &name[..name.len().min(64)];
                self.too_large = Some((String::from_utf8_lossy(shown).into_owned(), size));
            }
            return self;
        }
        let record_start = self.cuts.last().copied().unwrap_or(0);
        if self.buf.len() - record_start + size > MAX_CONTENT_LEN {
            self.cuts.push(self.buf.len());
        }
        // Cannot fail: size <= MAX_CONTENT_LEN implies both parts fit in 31 bits.
        record::encode_pair(&mut self.buf, name, value);
        self.count += 1;
        self
    }

    /// Number of pairs pushed (excluding rejected oversized ones).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no pair was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Removes all pairs, keeping the allocation for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.cuts.clear();
        self.count = 0;
        self.too_large = None;
    }

    /// The encoded pairs, back to back (FastCGI name-value pair encoding).
    pub fn encoded(&self) -> &[u8] {
        &self.buf
    }

    /// The pairs, decoded back, in push order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        // The buffer only ever holds pairs we encoded, so decoding cannot fail.
        record::decode_pairs(&self.buf)
            .unwrap_or_default()
            .into_iter()
    }

    /// Fails if a pushed pair could not be sent.
    pub(crate) fn check(&self) -> Result<(), FastCgiError> {
        match &self.too_large {
            Some((name, size)) => Err(FastCgiError::ParamTooLarge {
                name: name.clone(),
                size: *size,
                max: MAX_CONTENT_LEN,
            }),
            None => Ok(()),
        }
    }

    /// Appends the PARAMS records and the empty PARAMS record that ends the stream.
    pub(crate) fn write_records(&self, out: &mut Vec<u8>) {
        out.reserve(self.buf.len() + (self.cuts.len() + 2) * record::HEADER_LEN);
        let mut start = 0;
        for end in self
            .cuts
            .iter()
            .copied()
            .chain(std::iter::once(self.buf.len()))
        {
            if end > start {
                record::push_record(out, PARAMS, &self.buf[start..end]);
            }
            start = end;
        }
        record::push_record(out, PARAMS, &[]);
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> Extend<(N, V)> for Params {
    fn extend<I: IntoIterator<Item = (N, V)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.push(name, value);
        }
    }
}

impl<N: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(N, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Params {
        let mut params = Params::new();
        params.extend(iter);
        params
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.iter()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_pairs, Header, HEADER_LEN};

    /// Splits a byte stream of records into (header, content) pairs.
    fn records(mut bytes: &[u8]) -> Vec<(Header, &[u8])> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let h = Header::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
            let content = &bytes[HEADER_LEN..HEADER_LEN + usize::from(h.content_len)];
            out.push((h, content));
            bytes = &bytes[HEADER_LEN + h.body_len()..];
        }
        out
    }

    #[test]
    fn push_keeps_order_and_duplicates() {
        let mut p = Params::with_capacity(64);
        p.push("A", "1")
            .push(b"B", [0u8, 1])
            .push(String::from("A"), "2");
        assert_eq!(p.len(), 3);
        let pairs: Vec<_> = p.iter().collect();
        assert_eq!(
            pairs,
            vec![
                (&b"A"[..], &b"1"[..]),
                (&b"B"[..], &[0u8, 1][..]),
                (&b"A"[..], &b"2"[..])
            ]
        );
        assert_eq!(decode_pairs(p.encoded()).unwrap(), pairs);
    }

    #[test]
    fn small_params_make_one_record_plus_terminator() {
        let p: Params = [("REQUEST_METHOD", "GET"), ("QUERY_STRING", "")]
            .into_iter()
            .collect();
        let mut out = Vec::new();
        p.write_records(&mut out);
        let recs = records(&out);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].0.kind, PARAMS);
        assert_eq!(recs[0].0.request_id, 1);
        assert_eq!(recs[0].1, p.encoded());
        assert_eq!(recs[1].0.content_len, 0);
    }

    #[test]
    fn empty_params_send_only_the_terminator() {
        let mut out = Vec::new();
        Params::new().write_records(&mut out);
        assert_eq!(out, [1, PARAMS, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn large_params_split_at_pair_boundaries() {
        let mut p = Params::new();
        let value = vec![b'x'; 30_000];
        for i in 0..7 {
            p.push(format!("HTTP_X_{i}"), &value);
        }
        p.check().unwrap();
        let mut out = Vec::new();
        p.write_records(&mut out);
        let recs = records(&out);
        // Two 30 KB pairs fit per record: 4 data records + terminator.
        assert_eq!(recs.len(), 5);
        let mut all = Vec::new();
        for (h, content) in &recs {
            assert!(usize::from(h.content_len) <= MAX_CONTENT_LEN);
            // Every record decodes on its own, as PHP requires.
            let n = decode_pairs(content).unwrap().len();
            assert!(n <= 2);
            all.extend_from_slice(content);
        }
        assert_eq!(all, p.encoded());
        assert_eq!(decode_pairs(&all).unwrap().len(), 7);
    }

    #[test]
    fn pair_that_exactly_fills_a_record_is_accepted() {
        let mut p = Params::new();
        // 1 + 4 + 1 + value = 65535
        let value = vec![b'v'; MAX_CONTENT_LEN - 6];
        p.push("N", &value);
        p.check().unwrap();
        p.push("M", "after");
        let mut out = Vec::new();
        p.write_records(&mut out);
        assert_eq!(records(&out).len(), 3);
    }

    #[test]
    fn oversized_pair_is_reported_not_sent() {
        let mut p = Params::new();
        p.push("OK", "1");
        p.push("HTTP_COOKIE", vec![b'c'; 70_000]);
        assert_eq!(p.len(), 1);
        match p.check() {
            Err(FastCgiError::ParamTooLarge { name, size, max }) => {
                assert_eq!(name, "HTTP_COOKIE");
                assert_eq!(size, 70_000 + 11 + 1 + 4);
                assert_eq!(max, MAX_CONTENT_LEN);
            }
            other => panic!("expected ParamTooLarge, got {other:?}"),
        }
        p.clear();
        assert!(p.is_empty());
        p.check().unwrap();
    }

    #[test]
    fn debug_shows_pairs() {
        let mut p = Params::new();
        p.push("A", "b");
        assert_eq!(format!("{p:?}"), r#"{"A": "b"}"#);
    }
}
