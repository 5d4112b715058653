//! Attachments: uploads streamed to disk and recognised by their content, and downloads
//! served only to members of the message's room.

use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Buf, Filter, Reply};

use super::ranges::{self, Ranges};
use super::{bearer, user_for_token, with_state, ApiError};
use crate::state::SharedState;
use crate::store::{Attachment, StoreError};

/// Room for the multipart framing and the `content` field on top of the attachment limit.
pub const FORM_OVERHEAD: u64 = 256 * 1024;
/// Bytes kept from the start of a file to recognise its type.
const SNIFF_BYTES: usize = 8192;
const INCOMING_DIR: &str = ".incoming";

/// The multipart form of a send (documentation only).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    content: String,
    /// An image (jpg png gif bmp svg webp ico) or video (mp4 avi mkv mov wmv flv webm 3gp).
    #[schema(value_type = String, format = Binary)]
    attachment: Vec<u8>,
}

/// A received file; removed from disk when dropped unless [`SavedFile::keep`] was called.
pub struct SavedFile {
    pub attachment: Attachment,
    path: Option<PathBuf>,
}

impl SavedFile {
    pub fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for SavedFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub struct Upload {
    pub content: Option<String>,
    pub attachment: Option<SavedFile>,
}

/// Removes a partly written upload on every early return.
struct Incoming(Option<PathBuf>);

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bad_form(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid multipart body: {e}"))
}

/// Reads a send form part by part; the attachment goes to disk chunk by chunk.
pub async fn receive(
    mut form: warp::multipart::FormData,
    media_dir: &Path,
    max_bytes: u64,
) -> Result<Upload, ApiError> {
    let mut upload = Upload {
        content: None,
        attachment: None,
    };
    while let Some(part) = form.try_next().await.map_err(bad_form)? {
        match part.name() {
            "content" => {
                let mut text = Vec::new();
                let mut chunks = part.stream();
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk.map_err(bad_form)?;
                    text.extend_from_slice(chunk.chunk());
                    if text.len() > crate::domain::values::MAX_CONTENT_CHARS * 4 {
                        return Err(ApiError::bad_request("Message content is too long"));
                    }
                }
                let text = String::from_utf8(text)
                    .map_err(|_| ApiError::bad_request("Message content is not valid UTF-8"))?;
                upload.content = Some(text);
            }
            "attachment" => {
                if upload.attachment.is_some() {
                    return Err(ApiError::bad_request("Only one attachment per message"));
                }
                upload.attachment = Some(save_attachment(part, media_dir, max_bytes).await?);
            }
            _ => {
                // Unknown fields are read past, bounded by the form's length limit.
                let mut chunks = part.stream();
                while let Some(chunk) = chunks.next().await {
                    chunk.map_err(bad_form)?;
                }
            }
        }
    }
    Ok(upload)
}

async fn save_attachment(
    part: warp::multipart::Part,
    media_dir: &Path,
    max_bytes: u64,
) -> Result<SavedFile, ApiError> {
    let original_name = clean_file_name(part.filename());
    let storage =
        |e: std::io::Error| ApiError::from(StoreError::from_io("cannot write an upload", e));
    let incoming_dir = media_dir.join(INCOMING_DIR);
    tokio::fs::create_dir_all(&incoming_dir)
        .await
        .map_err(storage)?;
    let name = uuid::Uuid::new_v4().simple().to_string();
    let temp_path = incoming_dir.join(&name);
    let mut guard = Incoming(Some(temp_path.clone()));
    let mut file = tokio::fs::File::create(&temp_path).await.map_err(storage)?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    let mut size: u64 = 0;
    let mut chunks = part.stream();
    while let Some(chunk) = chunks.next().await {
        let mut chunk = chunk.map_err(bad_form)?;
        size += chunk.remaining() as u64;
        if size > max_bytes {
            return Err(ApiError::PayloadTooLarge(format!(
                "The attachment is larger than the limit of {max_bytes} bytes"
            )));
        }
        if head.len() < SNIFF_BYTES {
            let bytes = chunk.chunk();
            let take = bytes.len().min(SNIFF_BYTES - head.len());
            head.extend_from_slice(&bytes[..take]);
        }
        file.write_all_buf(&mut chunk).await.map_err(storage)?;
    }
    if size == 0 {
        return Err(ApiError::bad_request("The attachment is empty"));
    }
    file.sync_all().await.map_err(storage)?;
    drop(file);
    let (extension, content_type) = sniff(&head).ok_or_else(|| {
        ApiError::bad_request(
            "Unsupported attachment: only images (jpg jpeg png gif bmp svg webp ico) and videos \
             (mp4 avi mkv mov wmv flv webm 3gp) are accepted, recognised by their content",
        )
    })?;
    let file_name = format!("{name}.{extension}");
    let final_path = media_dir.join(&file_name);
    tokio::fs::rename(&temp_path, &final_path)
        .await
        .map_err(storage)?;
    guard.0 = None;
    Ok(SavedFile {
        attachment: Attachment {
            file_name,
            content_type: content_type.to_string(),
            size,
            original_name,
        },
        path: Some(final_path),
    })
}

/// Longest original file name kept, in characters.
const MAX_FILE_NAME: usize = 255;

/// The last path component of a client's file name, without control characters, at most
/// [`MAX_FILE_NAME`] characters; `None` if nothing is left.
fn clean_file_name(raw: Option<&str>) -> Option<String> {
    let last = raw?.rsplit(['/', '\\']).next()?;
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_FILE_NAME)
        .collect();
    let clean = clean.trim();
    (!clean.is_empty() && clean != "." && clean != "..").then(|| clean.to_string())
}

/// `inline`, with the original name as an ASCII fallback and RFC 5987's UTF-8 form.
fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String =
        name.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                b'!' | b'#' | b'$' | b'&' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|'
                | b'~' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
    let value = format!("inline; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("inline"))
}

/// The file's type from its first bytes: `(extension, content type)` for accepted media.
pub fn sniff(head: &[u8]) -> Option<(&'static str, &'static str)> {
    if is_svg(head) {
        return Some(("svg", "image/svg+xml"));
    }
    // 3GP is an ISO media file whose brand starts with "3gp"/"3g2".
    if head.len() >= 11
        && &head[4..8] == b"ftyp"
        && (&head[8..11] == b"3gp" || &head[8..11] == b"3g2")
    {
        return Some(("3gp", "video/3gpp"));
    }
    let kind = infer::get(head)?;
    Some(match kind.mime_type() {
        "image/jpeg" => ("jpg", "image/jpeg"),
        "image/png" => ("png", "image/png"),
        "image/gif" => ("gif", "image/gif"),
        "image/bmp" => ("bmp", "image/bmp"),
        "image/webp" => ("webp", "image/webp"),
        "image/vnd.microsoft.icon" | "image/x-icon" => ("ico", "image/x-icon"),
        "video/mp4" | "video/x-m4v" => ("mp4", "video/mp4"),
        "video/x-msvideo" => ("avi", "video/x-msvideo"),
        "video/x-matroska" => ("mkv", "video/x-matroska"),
        "video/quicktime" => ("mov", "video/quicktime"),
        "video/x-ms-wmv" => ("wmv", "video/x-ms-wmv"),
        "video/x-flv" => ("flv", "video/x-flv"),
        "video/webm" => ("webm", "video/webm"),
        _ => return None,
    })
}

fn is_svg(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    (text.starts_with("<?xml") || text.starts_with("<svg") || text.starts_with("<!DOCTYPE svg"))
        && text.contains("<svg")
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
    /// A capability URL's expiry and signature (`MediaUrls::mint`).
    exp: Option<String>,
    sig: Option<String>,
}

/// `GET /media/<file>`: the file, for members of its message's room only.
pub fn routes(state: SharedState) -> BoxedFilter<(Response,)> {
    warp::path("media")
        .and(warp::get())
        .and(warp::path::tail())
        .and(with_state(state))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<TokenQuery>())
        .and(warp::header::headers_cloned())
        .then(download)
        .and_then(super::respond)
        .boxed()
}

/// Download an attachment (members of its chatroom only).
#[utoipa::path(get, path = "/media/{file}", tag = "media", security(("bearer" = [])),
    params(("file" = String, Path, description = "File name from a message's attachment URL"),
           ("token" = Option<String>, Query, description = "Access token (or an Authorization header)"),
           ("exp" = Option<i64>, Query, description = "Expiry of a signed URL (unix seconds), as minted in answers and frames"),
           ("sig" = Option<String>, Query, description = "Signature of a signed URL: with `exp`, no credentials are needed"),
           ("range" = Option<String>, Header, description = "Byte ranges: `bytes=0-1023`, a suffix `bytes=-500`, or several (`bytes=0-99,200-299`: a `multipart/byteranges` answer)"),
           ("if-none-match" = Option<String>, Header, description = "The `ETag` of a copy the client holds")),
    responses((status = 200, description = "The file, with its content type"),
              (status = 206, description = "The requested byte range"),
              (status = 304, description = "The client's copy (`If-None-Match`) is current"),
              (status = 401, description = "Neither a signed URL nor an access token"),
              (status = 403, description = "Not a member of the attachment's chatroom, or a signed URL that expired or was altered"),
              (status = 404, description = "No such attachment, or its file is not on this node (`The file of this attachment is not on this node`)"),
              (status = 416, description = "The range starts past the end of the file")))]
pub async fn download(
    tail: warp::path::Tail,
    state: SharedState,
    auth: Option<String>,
    query: TokenQuery,
    headers: warp::http::HeaderMap,
) -> Result<Response, ApiError> {
    let name = tail.as_str();
    let owner = authorize_download(name, &state, auth, query).await?;
    // A stored file never changes (a new upload gets a new name): its name is its version.
    let etag = format!("\"{name}\"");
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|tags| matches_etag(tags, &etag)) {
        let mut unchanged =
            warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response();
        caching_headers(unchanged.headers_mut(), &etag);
        return Ok(unchanged);
    }
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let file = open_inside(&state.config.media_dir(), name).await?;
    let size = file
        .metadata()
        .await
        .map_err(|e| ApiError::from(StoreError::from_io("cannot read an attachment", e)))?
        .len();
    let content_type = HeaderValue::from_str(&owner.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    let mut response = match ranges::parse(range.as_deref(), size) {
        Ranges::Unsatisfiable => return Ok(unsatisfiable(size)),
        asked => body(file, asked, size, content_type).await?,
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    caching_headers(headers, &etag);
    if let Some(original) = &owner.original_name {
        headers.insert(header::CONTENT_DISPOSITION, content_disposition(original));
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    );
    Ok(response)
}

/// The whole file (200), one range of it or several (206), with their length and type.
async fn body(
    mut file: tokio::fs::File,
    asked: Ranges,
    size: u64,
    content_type: HeaderValue,
) -> Result<Response, ApiError> {
    let (status, length, mut response) = match asked {
        Ranges::Unsatisfiable | Ranges::Whole => {
            let body = warp::reply::stream(file_chunks(file, size)).into_response();
            (StatusCode::OK, size, body)
        }
        Ranges::Parts(parts) if parts.len() == 1 => {
            let (start, end) = parts[0];
            seek(&mut file, start).await?;
            let mut body = warp::reply::stream(file_chunks(file, end - start)).into_response();
            let span = format!("bytes {start}-{}/{size}", end - 1);
            let span = HeaderValue::from_str(&span).expect("ascii");
            body.headers_mut().insert(header::CONTENT_RANGE, span);
            (StatusCode::PARTIAL_CONTENT, end - start, body)
        }
        Ranges::Parts(parts) => {
            let boundary = hex::encode(rand::random::<[u8; 12]>());
            let content_type = content_type.to_str().unwrap_or("application/octet-stream");
            let (length, body) = ranges::multipart(file, &parts, content_type, size, &boundary);
            let mut body = warp::reply::stream(body).into_response();
            let multipart = format!("multipart/byteranges; boundary={boundary}");
            let multipart = HeaderValue::from_str(&multipart).expect("ascii");
            body.headers_mut().insert(header::CONTENT_TYPE, multipart);
            (StatusCode::PARTIAL_CONTENT, length, body)
        }
    };
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.entry(header::CONTENT_TYPE).or_insert(content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(response)
}

/// Opens `name` inside `dir` without following a symbolic link: a stored file replaced by a
/// link (to the JWT secret, say) is not served. `name` is one plain path component (checked
/// by [`authorize_download`]), so the last component is the only one a link could hide in.
async fn open_inside(dir: &Path, name: &str) -> Result<tokio::fs::File, ApiError> {
    let not_found = || ApiError::not_found("Attachment not found");
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: a FIFO put in its place must not block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(dir.join(name))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ApiError::not_found(
                "The file of this attachment is not on this node (attachments are stored on \
                 the node that received them)",
            ),
            _ => not_found(),
        })?;
    match file.metadata().await {
        Ok(meta) if meta.is_file() => Ok(file),
        _ => Err(not_found()),
    }
}

/// `If-None-Match` lists `etag` (weak comparison, as RFC 9110 asks for it) or is `*`.
fn matches_etag(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

/// Caches may keep a file, for the one user who fetched it only: it is a member's.
fn caching_headers(headers: &mut warp::http::HeaderMap, etag: &str) {
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
}

/// 416, saying how long the file is.
fn unsatisfiable(size: u64) -> Response {
    let mut refused = super::error_response(&ApiError::RangeNotSatisfiable(format!(
        "The range starts past the end of the file ({size} bytes)"
    )));
    let total = HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii");
    refused.headers_mut().insert(header::CONTENT_RANGE, total);
    refused
}

async fn seek(file: &mut tokio::fs::File, start: u64) -> Result<(), ApiError> {
    use tokio::io::AsyncSeekExt;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map(|_| ())
        .map_err(|e| ApiError::from(StoreError::from_io("cannot read an attachment", e)))
}

/// `length` bytes of `file` from where it stands, in chunks of at most 64 KiB.
fn file_chunks(
    file: tokio::fs::File,
    length: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::try_unfold(file.take(length), |mut reader| async move {
        let mut chunk = bytes::BytesMut::with_capacity(64 * 1024);
        let read = reader.read_buf(&mut chunk).await?;
        Ok((read > 0).then(|| (chunk.freeze(), reader)))
    })
}

async fn authorize_download(
    name: &str,
    state: &SharedState,
    auth: Option<String>,
    query: TokenQuery,
) -> Result<crate::store::AttachmentOwner, ApiError> {
    let signed = match (query.exp.as_deref(), query.sig.as_deref()) {
        (None, None) => false,
        (Some(exp), Some(sig)) => {
            state
                .media_urls
                .check(name, exp, sig)
                .map_err(|refusal| ApiError::forbidden(refusal.to_string()))?;
            true
        }
        _ => {
            let refusal = crate::auth::media_url::MediaUrlRefusal::Invalid;
            return Err(ApiError::forbidden(refusal.to_string()));
        }
    };
    // A signed URL is a capability minted for a member; otherwise the caller must be one.
    let user = if signed {
        None
    } else {
        let token = match query.token.as_deref() {
            Some(token) => Some(token),
            None => bearer(auth.as_deref()).map_err(ApiError::from)?,
        };
        Some(user_for_token(state, token).await?)
    };
    let not_found = || ApiError::not_found("Attachment not found");
    let plain_name = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !plain_name {
        return Err(not_found());
    }
    let owner = state
        .store
        .attachment_owner(name)
        .await?
        .ok_or_else(not_found)?;
    let Some(user) = user else {
        return Ok(owner);
    };
    state
        .store
        .check_member(owner.room_id, user.id)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotMember => {
                ApiError::forbidden("Only members of the chatroom may download this attachment")
            }
            other => other.into(),
        })?;
    Ok(owner)
}

#[cfg(test)]
mod tests {
    use super::{clean_file_name, content_disposition, sniff};

    #[test]
    fn file_names_lose_their_path_and_controls_and_are_encoded_safely() {
        assert_eq!(
            clean_file_name(Some("C:\\Users\\me\\pic.png")).as_deref(),
            Some("pic.png")
        );
        assert_eq!(
            clean_file_name(Some("../../etc/passwd")).as_deref(),
            Some("passwd")
        );
        assert_eq!(
            clean_file_name(Some("a\r\nb.png")).as_deref(),
            Some("ab.png")
        );
        assert_eq!(clean_file_name(Some("..")), None);
        assert_eq!(clean_file_name(Some("  ")), None);
        assert_eq!(clean_file_name(None), None);
        let header = content_disposition("été \"1\".png");
        assert_eq!(
            header.to_str().unwrap(),
            "inline; filename=\"_t_ _1_.png\"; filename*=UTF-8''%C3%A9t%C3%A9%20%221%22.png"
        );
    }

    #[test]
    fn recognises_media_by_content() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png), Some(("png", "image/png")));
        assert_eq!(
            sniff(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
                .unwrap()
                .0,
            "svg"
        );
        assert_eq!(sniff(b"\0\0\0\x18ftyp3gp4\0\0\0\0").unwrap().0, "3gp");
        assert_eq!(sniff(b"just some text pretending to be a png"), None);
    }
}
