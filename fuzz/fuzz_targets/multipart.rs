//! Multipart sends (`content` + `attachment`) through warp's real multipart filter and the
//! node's upload code: parts are read, the attachment is streamed to disk and recognised by
//! its bytes. Never a panic; a refused form is a 400/413 that leaves nothing on disk; an
//! accepted attachment is on disk byte for byte, named after what its content is, and
//! removed again when the message is not stored (the upload is dropped).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chatnode::http::media::{self, Upload, FORM_OVERHEAD};
use chatnode::http::ApiError;
use libfuzzer_sys::fuzz_target;
use warp::Filter;

/// Small, so the fuzzer also reaches the size limit.
const MAX_UPLOAD: u64 = 2048;
const BOUNDARY: &str = "chatnode-fuzz-7f3a9c2e";

/// Start bytes of the accepted media kinds, so inputs reach past the sniffing quickly.
const MAGIC: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    b"\xff\xd8\xff\xe0",
    b"GIF89a",
    b"BM",
    b"RIFF\0\0\0\0WEBPVP8 ",
    b"\0\0\x01\0",
    b"\0\0\0\x18ftypmp42",
    b"\0\0\0\x18ftyp3gp4",
    b"\0\0\0\x14ftypqt  ",
    b"RIFF\0\0\0\0AVI LIST",
    b"\x1a\x45\xdf\xa3\x93\x42\x82\x88matroska",
    b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm",
    b"\x30\x26\xb2\x75\x8e\x66\xcf\x11",
    b"FLV\x01",
    b"<svg xmlns='http://www.w3.org/2000/svg'>",
    b"<?xml version='1.0'?><svg>",
];

#[derive(Arbitrary, Debug)]
struct Input {
    parts: Vec<Part>,
    /// Bytes after the closing boundary (or, with `close: false`, instead of it).
    tail: Vec<u8>,
    close: bool,
}

#[derive(Arbitrary, Debug)]
struct Part {
    name: Name,
    filename: Option<String>,
    content_type: Option<String>,
    magic: Option<u8>,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Name {
    Content,
    Attachment,
    Other(String),
}

impl Part {
    fn name(&self) -> &str {
        match &self.name {
            Name::Content => "content",
            Name::Attachment => "attachment",
            Name::Other(name) => name,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = self
            .magic
            .map(|i| MAGIC[usize::from(i) % MAGIC.len()].to_vec())
            .unwrap_or_default();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Whether this part's framing is as written: nothing the multipart parser would read
    /// differently (quotes, line breaks, the boundary inside the data).
    fn plain(&self) -> bool {
        let text_ok = |s: &str| !s.contains(['"', '\\', '\r', '\n', ';']) && !s.contains(BOUNDARY);
        text_ok(self.name())
            && self.filename.as_deref().is_none_or(text_ok)
            && self.content_type.as_deref().is_none_or(text_ok)
            && !contains(&self.bytes(), BOUNDARY.as_bytes())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

struct Env {
    runtime: tokio::runtime::Runtime,
    media: PathBuf,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let media =
            std::env::temp_dir().join(format!("chatnode-fuzz-multipart-{}", std::process::id()));
        std::fs::create_dir_all(&media).expect("a media directory");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Env { runtime, media }
    })
}

fuzz_target!(|input: Input| {
    let env = env();
    let mut body = Vec::new();
    for part in &input.parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{}\"", part.name());
        if let Some(filename) = &part.filename {
            disposition.push_str(&format!("; filename=\"{filename}\""));
        }
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = &part.content_type {
            body.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&part.bytes());
        body.extend_from_slice(b"\r\n");
    }
    if input.close {
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    }
    body.extend_from_slice(&input.tail);

    let media = env.media.clone();
    let form = warp::multipart::form()
        .max_length(MAX_UPLOAD + FORM_OVERHEAD)
        .then(move |form| {
            let media = media.clone();
            async move { media::receive(form, &media, MAX_UPLOAD).await }
        });
    let outcome = env.runtime.block_on(
        warp::test::request()
            .method("POST")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .filter(&form),
    );
    // Parts exactly as built: the outcome is known.
    let exact = input.close && input.tail.is_empty() && input.parts.iter().all(Part::plain);
    match outcome {
        Ok(Ok(upload)) => accepted(&env.media, upload, exact.then_some(&input.parts[..])),
        Ok(Err(error)) => refused(&error),
        Err(rejection) => panic!("the form filter rejected: {rejection:?}"),
    }
    assert_eq!(
        files_in(&env.media),
        Vec::<PathBuf>::new(),
        "files left behind"
    );
});

fn accepted(media: &Path, upload: Upload, parts: Option<&[Part]>) {
    if let Some(saved) = &upload.attachment {
        let attachment = &saved.attachment;
        let path = media.join(&attachment.file_name);
        let bytes = std::fs::read(&path).expect("the attachment is on disk");
        assert_eq!(bytes.len() as u64, attachment.size);
        assert!(attachment.size > 0 && attachment.size <= MAX_UPLOAD);
        let (extension, content_type) = media::sniff(&bytes[..bytes.len().min(8192)])
            .expect("a stored attachment is accepted media");
        assert_eq!(attachment.content_type, content_type);
        assert!(attachment.file_name.ends_with(&format!(".{extension}")));
        if let Some(parts) = parts {
            let sent = parts
                .iter()
                .find(|p| p.name() == "attachment")
                .expect("sent");
            assert_eq!(bytes, sent.bytes());
        }
    }
    if let Some(parts) = parts {
        let sent = parts.iter().rev().find(|p| p.name() == "content");
        let sent = sent.map(|p| String::from_utf8(p.bytes()).expect("accepted text is UTF-8"));
        assert_eq!(upload.content, sent);
        assert_eq!(
            upload.attachment.is_some(),
            parts.iter().any(|p| p.name() == "attachment")
        );
    }
    // The message is not stored here, so the file goes with the upload.
    drop(upload);
}

fn refused(error: &ApiError) {
    assert!(
        matches!(error.status().as_u16(), 400 | 413),
        "{} {}",
        error.status(),
        error.errors()
    );
    assert!(error.errors()["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(files_in(&path));
        } else {
            files.push(path);
        }
    }
    files
}
