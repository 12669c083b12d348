//! FastCGI 1.0 wire format: record headers, record types, name-value pairs.
//!
//! Only what a RESPONDER client needs. Public so tests and fake servers in
//! other crates can speak the same bytes.

use crate::FastCgiError;

/// Protocol version carried in every record header.
pub const VERSION_1: u8 = 1;
/// Size of a record header.
pub const HEADER_LEN: usize = 8;
/// Largest content length a record can carry (the field is a u16).
pub const MAX_CONTENT_LEN: usize = 0xffff;
/// The only request id this client uses: PHP does not multiplex.
pub const REQUEST_ID: u16 = 1;

/// FCGI_BEGIN_REQUEST
pub const BEGIN_REQUEST: u8 = 1;
/// FCGI_ABORT_REQUEST
pub const ABORT_REQUEST: u8 = 2;
/// FCGI_END_REQUEST
pub const END_REQUEST: u8 = 3;
/// FCGI_PARAMS
pub const PARAMS: u8 = 4;
/// FCGI_STDIN
pub const STDIN: u8 = 5;
/// FCGI_STDOUT
pub const STDOUT: u8 = 6;
/// FCGI_STDERR
pub const STDERR: u8 = 7;
/// FCGI_DATA
pub const DATA: u8 = 8;
/// FCGI_GET_VALUES
pub const GET_VALUES: u8 = 9;
/// FCGI_GET_VALUES_RESULT
pub const GET_VALUES_RESULT: u8 = 10;
/// FCGI_UNKNOWN_TYPE
pub const UNKNOWN_TYPE: u8 = 11;

/// Role FCGI_RESPONDER.
pub const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after END_REQUEST.
pub const FLAG_KEEP_CONN: u8 = 1;

/// END_REQUEST protocol status: normal end.
pub const REQUEST_COMPLETE: u8 = 0;
/// END_REQUEST protocol status: server does not multiplex.
pub const CANT_MPX_CONN: u8 = 1;
/// END_REQUEST protocol status: server is out of some resource.
pub const OVERLOADED: u8 = 2;
/// END_REQUEST protocol status: role not supported.
pub const UNKNOWN_ROLE: u8 = 3;

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Record type (STDOUT, END_REQUEST, ...).
    pub kind: u8,
    /// Request id the record belongs to (0 = management record).
    pub request_id: u16,
    /// Bytes of content following the header.
    pub content_len: u16,
    /// Bytes of padding following the content.
    pub padding_len: u8,
}

impl Header {
    /// Encodes the header (version 1, no padding unless set).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_len.to_be_bytes();
        [
            VERSION_1,
            self.kind,
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_len,
            0,
        ]
    }

    /// Decodes a header; rejects versions other than 1.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, FastCgiError> {
        if bytes[0] != VERSION_1 {
            return Err(FastCgiError::Protocol(format!(
                "record with unsupported version {} (type {})",
                bytes[0], bytes[1]
            )));
        }
        Ok(Header {
            kind: bytes[1],
            request_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            content_len: u16::from_be_bytes([bytes[4], bytes[5]]),
            padding_len: bytes[6],
        })
    }

    /// Content plus padding: how many bytes follow this header.
    pub fn body_len(&self) -> usize {
        usize::from(self.content_len) + usize::from(self.padding_len)
    }
}

/// Header of a record for request [`REQUEST_ID`] with no padding.
///
/// `content_len` must be at most [`MAX_CONTENT_LEN`]; callers split first.
pub(crate) fn header(kind: u8, content_len: usize) -> [u8; HEADER_LEN] {
    debug_assert!(content_len <= MAX_CONTENT_LEN);
    Header {
        kind,
        request_id: REQUEST_ID,
        content_len: content_len as u16,
        padding_len: 0,
    }
    .encode()
}

/// Appends one record (header + content, no padding); content must fit one record.
pub(crate) fn push_record(buf: &mut Vec<u8>, kind: u8, content: &[u8]) {
    buf.extend_from_slice(&header(kind, content.len()));
    buf.extend_from_slice(content);
}

/// The complete FCGI_BEGIN_REQUEST record: role RESPONDER, KEEP_CONN.
pub fn begin_request_record() -> [u8; HEADER_LEN + 8] {
    let h = header(BEGIN_REQUEST, 8);
    let role = ROLE_RESPONDER.to_be_bytes();
    [
        h[0],
        h[1],
        h[2],
        h[3],
        h[4],
        h[5],
        h[6],
        h[7],
        role[0],
        role[1],
        FLAG_KEEP_CONN,
        0,
        0,
        0,
        0,
        0,
    ]
}

/// Largest length a name or value can have (31-bit length field).
pub const MAX_PAIR_PART_LEN: usize = 0x7fff_ffff;

/// Encoded size of a length: 1 byte below 128, else 4.
pub fn length_size(len: usize) -> usize {
    if len < 0x80 {
        1
    } else {
        4
    }
}

/// Encoded size of one name-value pair.
pub fn pair_size(name_len: usize, value_len: usize) -> usize {
    length_size(name_len) + length_size(value_len) + name_len + value_len
}

fn push_length(buf: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        buf.push(len as u8);
    } else {
        // High bit marks the 4-byte form; callers cap len at 31 bits.
        buf.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
    }
}

/// Appends one name-value pair in FastCGI encoding.
///
/// Returns false (appending nothing) if a part is longer than
/// [`MAX_PAIR_PART_LEN`], which the encoding cannot express.
pub fn encode_pair(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) -> bool {
    if name.len() > MAX_PAIR_PART_LEN || value.len() > MAX_PAIR_PART_LEN {
        return false;
    }
    buf.reserve(pair_size(name.len(), value.len()));
    push_length(buf, name.len());
    push_length(buf, value.len());
    buf.extend_from_slice(name);
    buf.extend_from_slice(value);
    true
}

fn read_length(bytes: &[u8], pos: &mut usize) -> Result<usize, FastCgiError> {
    let truncated = || FastCgiError::Protocol("truncated name-value pair length".into());
    let first = *bytes.get(*pos).ok_or_else(truncated)?;
    if first < 0x80 {
        *pos += 1;
        return Ok(usize::from(first));
    }
    let four = bytes.get(*pos..*pos + 4).ok_or_else(truncated)?;
    *pos += 4;
    let len = u32::from_be_bytes([four[0] & 0x7f, four[1], four[2], four[3]]);
    Ok(len as usize)
}

/// A decoded name-value pair borrowing from the record content.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

/// Decodes a buffer of name-value pairs (the content of PARAMS or
/// GET_VALUES_RESULT records) into borrowed slices.
pub fn decode_pairs(bytes: &[u8]) -> Result<Vec<Pair<'_>>, FastCgiError> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let name_len = read_length(bytes, &mut pos)?;
        let value_len = read_length(bytes, &mut pos)?;
        let name_end = pos
            .checked_add(name_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                FastCgiError::Protocol("name-value pair name runs past the end".into())
            })?;
        let value_end = name_end
            .checked_add(value_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| {
                FastCgiError::Protocol("name-value pair value runs past the end".into())
            })?;
        pairs.push((&bytes[pos..name_end], &bytes[name_end..value_end]));
        pos = value_end;
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            kind: STDOUT,
            request_id: 0x0102,
            content_len: 0xfffe,
            padding_len: 6,
        };
        let bytes = h.encode();
        assert_eq!(bytes, [1, 6, 1, 2, 0xff, 0xfe, 6, 0]);
        assert_eq!(Header::decode(&bytes).unwrap(), h);
        assert_eq!(h.body_len(), 0xfffe + 6);
    }

    #[test]
    fn header_rejects_other_versions() {
        let err = Header::decode(&[2, 6, 0, 1, 0, 0, 0, 0]).unwrap_err();
        assert!(matches!(err, FastCgiError::Protocol(_)), "{err}");
    }

    #[test]
    fn begin_request_is_responder_keep_conn() {
        assert_eq!(
            begin_request_record(),
            [1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn short_pair_uses_one_byte_lengths() {
        let mut buf = Vec::new();
        assert!(encode_pair(&mut buf, b"QUERY_STRING", b"a=1"));
        let mut expected = vec![12, 3];
        expected.extend_from_slice(b"QUERY_STRINGa=1");
        assert_eq!(buf, expected);
        assert_eq!(buf.len(), pair_size(12, 3));
    }

    #[test]
    fn length_127_is_one_byte_128_is_four() {
        let mut buf = Vec::new();
        encode_pair(&mut buf, b"N", &[b'x'; 127]);
        assert_eq!(&buf[..2], &[1, 127]);

        buf.clear();
        encode_pair(&mut buf, b"N", &[b'x'; 128]);
        assert_eq!(&buf[..6], &[1, 0x80, 0, 0, 128, b'N']);
        assert_eq!(buf.len(), pair_size(1, 128));
    }

    #[test]
    fn long_name_and_value_use_four_byte_lengths() {
        let name = vec![b'n'; 300];
        let value = vec![b'v'; 70_000];
        let mut buf = Vec::new();
        encode_pair(&mut buf, &name, &value);
        assert_eq!(&buf[..4], &[0x80, 0, 0x01, 0x2c]);
        assert_eq!(&buf[4..8], &[0x80, 0x01, 0x11, 0x70]);
        let pairs = decode_pairs(&buf).unwrap();
        assert_eq!(pairs, vec![(&name[..], &value[..])]);
    }

    #[test]
    fn empty_name_and_value() {
        let mut buf = Vec::new();
        encode_pair(&mut buf, b"", b"");
        assert_eq!(buf, [0, 0]);
        assert_eq!(decode_pairs(&buf).unwrap(), vec![(&b""[..], &b""[..])]);
    }

    #[test]
    fn decode_many_pairs_in_order() {
        let mut buf = Vec::new();
        encode_pair(&mut buf, b"A", b"1");
        encode_pair(&mut buf, b"B", &[0u8, 255, 10]);
        encode_pair(&mut buf, b"A", b"2");
        let pairs = decode_pairs(&buf).unwrap();
        assert_eq!(
            pairs,
            vec![
                (&b"A"[..], &b"1"[..]),
                (&b"B"[..], &[0u8, 255, 10][..]),
                (&b"A"[..], &b"2"[..])
            ]
        );
    }

    #[test]
    fn decode_rejects_truncation() {
        let mut buf = Vec::new();
        encode_pair(&mut buf, b"NAME", &[b'v'; 200]);
        for cut in [1, 3, 6, 9, buf.len() - 1] {
            assert!(decode_pairs(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }
}
