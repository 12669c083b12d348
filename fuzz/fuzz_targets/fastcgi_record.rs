//! FastCGI records as a (hostile or broken) PHP worker would send them: the fuzz bytes are
//! everything the server writes back on a real socket, read by `Connection::request`; plus
//! `record::Header::decode` and `record::decode_pairs` directly.
//!
//! Invariants: no panic or hang; a response is accepted only when the input really holds an
//! END_REQUEST for request 1; STDOUT + STDERR never exceed the configured cap nor the input;
//! decoded name-value pairs borrow from the input and re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tusk_fastcgi::record::{self, Header, HEADER_LEN};
use tusk_fastcgi::{Connection, FastCgiError, Params};

/// STDOUT + STDERR cap for the connection, small enough for the fuzzer to cross it.
const CAP: usize = 4096;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a tokio runtime")
    })
}

fn check_pairs(content: &[u8]) {
    let Ok(pairs) = record::decode_pairs(content) else {
        return;
    };
    let mut again = Vec::new();
    for (name, value) in &pairs {
        assert!(name.len() + value.len() <= content.len());
        record::encode_pair(&mut again, name, value);
    }
    // Lengths under 128 may legally be sent in the 4-byte form, so compare decoded pairs.
    let redecoded = record::decode_pairs(&again).expect("our own encoding decodes");
    assert_eq!(redecoded, pairs, "name-value pairs round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Some(raw) = data.first_chunk::<HEADER_LEN>() {
        if let Ok(h) = Header::decode(raw) {
            assert_eq!(Header::decode(&h.encode()).ok(), Some(h));
            assert_eq!(
                h.body_len(),
                usize::from(h.content_len) + usize::from(h.padding_len)
            );
            let body = &data[HEADER_LEN..];
            check_pairs(&body[..body.len().min(usize::from(h.content_len))]);
        }
    }
    check_pairs(data);

    let result = runtime().block_on(async {
        let (ours, mut theirs) = tokio::net::UnixStream::pair().expect("a socket pair");
        let mut conn = Connection::from_unix(ours);
        conn.set_max_response_size(Some(CAP));
        let server = async {
            // Read the request while answering, so neither side blocks on a full buffer.
            let (mut rd, mut wr) = theirs.split();
            let drain = async {
                let mut sink = [0u8; 4096];
                while rd.read(&mut sink).await.map(|n| n > 0).unwrap_or(false) {}
            };
            let answer = async {
                let _ = wr.write_all(data).await;
                let _ = wr.shutdown().await;
            };
            tokio::join!(drain, answer);
        };
        let mut params = Params::new();
        params
            .push("SCRIPT_FILENAME", "/var/task/index.php")
            .push("REQUEST_METHOD", "POST");
        let client = async {
            let r = conn.request(&params, b"body").await;
            drop(conn); // closes our end so the server's drain ends
            r
        };
        let (r, ()) = tokio::join!(client, server);
        r
    });
    match result {
        Ok(resp) => {
            assert!(resp.stdout.len() + resp.stderr.len() <= CAP, "cap exceeded");
            assert!(resp.stdout.len() + resp.stderr.len() <= data.len());
            // The reply must contain an END_REQUEST header for request 1.
            let has_end = data.windows(4).any(|w| {
                w[0] == record::VERSION_1
                    && w[1] == record::END_REQUEST
                    && w[2..4] == record::REQUEST_ID.to_be_bytes()
            });
            assert!(has_end, "accepted a response without END_REQUEST");
        }
        Err(FastCgiError::ResponseTooLarge { limit }) => assert_eq!(limit, CAP),
        Err(_) => {}
    }
});
