//! The node's AMQP 1.0 connection, and the broker version read from its `open` frame on the
//! way (fe2o3-amqp does not expose the broker's properties).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::definitions::Fields;
use fe2o3_amqp::types::primitives::{Symbol, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::address::AddressFormat;
use super::Amqp10Transport;
use crate::config::Amqp10Addressing;
use crate::transport::amqp::topology::CONNECT_TIMEOUT;
use crate::transport::{Cause, TransportError};

/// The broker must send something (heartbeats when idle) this often, or the connection is
/// taken for dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of what the broker sends first is kept, to read its `open` frame.
const SNIFF_LIMIT: usize = 16 * 1024;

impl Amqp10Transport {
    pub(super) async fn connect_events(
        &self,
    ) -> Result<(ConnectionHandle<()>, AddressFormat), TransportError> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let open = async {
            let authority = &self.uri.authority;
            let tcp = TcpStream::connect((authority.host.as_str(), authority.port))
                .await
                .map_err(|e| -> Cause { Arc::new(e) })?;
            // Without it each small frame (a transfer, a disposition) waits for the broker's
            // delayed ACK: ~40 ms per publish on Linux.
            tcp.set_nodelay(true)
                .map_err(|e| -> Cause { Arc::new(e) })?;
            let stream = Sniffing {
                inner: tcp,
                seen: seen.clone(),
            };
            // RabbitMQ reads the virtual host from the `open` frame's hostname.
            let hostname = format!("vhost:{}", self.uri.vhost);
            let mut properties = Fields::new();
            properties.insert(
                Symbol::from("connection_name"),
                Value::String(self.connection_name()),
            );
            fe2o3_amqp::Connection::builder()
                .container_id(format!("chatnode-{}", self.node_id))
                .hostname(hostname.as_str())
                .sasl_profile(SaslProfile::Plain {
                    username: authority.userinfo.username.clone(),
                    password: authority.userinfo.password.clone(),
                })
                .idle_time_out(IDLE_TIMEOUT.as_millis() as u32)
                .properties(properties)
                .open_with_stream(stream)
                .await
                .map_err(|e| -> Cause { Arc::new(e) })
        };
        let connection = match timeout(CONNECT_TIMEOUT, open).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(source)) => {
                return Err(TransportError::Broker {
                    what: "AMQP 1.0",
                    source,
                })
            }
            Err(_) => {
                return Err(TransportError::Timeout {
                    what: "AMQP 1.0",
                    within: CONNECT_TIMEOUT,
                })
            }
        };
        let version = broker_version(&seen.lock().expect("sniffed bytes poisoned"));
        let format = match self.addressing {
            Amqp10Addressing::V1 => AddressFormat::V1,
            Amqp10Addressing::V2 => AddressFormat::V2,
            Amqp10Addressing::Auto => {
                if version.is_none() {
                    tracing::warn!("the broker did not announce its version; using v1 addresses (set --amqp10-addressing to choose)");
                }
                AddressFormat::for_version(version.as_deref())
            }
        };
        tracing::info!(
            broker = %self.redacted_url,
            node = %self.node_id,
            version = version.as_deref().unwrap_or("unknown"),
            addresses = ?format,
            "connected to the broker"
        );
        Ok((connection, format))
    }
}

/// The `version` RabbitMQ announces in its AMQP 1.0 `open` frame, found in the bytes the
/// broker sent first: protocol headers, SASL frames, then `open` as the first AMQP frame.
/// Public for the fuzz targets: these bytes come from the network.
pub fn broker_version(mut bytes: &[u8]) -> Option<String> {
    loop {
        if let Some(rest) = bytes.strip_prefix(b"AMQP") {
            bytes = rest.get(4..)?;
            continue;
        }
        let size = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        if size < 8 {
            return None;
        }
        let frame = bytes.get(..size)?;
        let (data_offset, kind) = (usize::from(frame[4]) * 4, frame[5]);
        // Type 0 is an AMQP frame (1 is SASL); the first one with a body is `open`.
        if kind == 0 && size > data_offset {
            return version_property(frame.get(data_offset..)?);
        }
        bytes = &bytes[size..];
    }
}

/// The `version` entry of an `open` performative's properties: the symbol `version` followed
/// by a string or symbol. Scanned for rather than decoded: a decoder (serde_amqp) allocates
/// whatever length the bytes declare before checking they are there, up to 4 GiB.
fn version_property(open: &[u8]) -> Option<String> {
    // The descriptor of `open`: 0x10 as a smallulong or a ulong.
    const OPEN: [&[u8]; 2] = [b"\x00\x53\x10", b"\x00\x80\0\0\0\0\0\0\0\x10"];
    const KEYS: [&[u8]; 2] = [b"\xa3\x07version", b"\xb3\0\0\0\x07version"];
    if !OPEN.iter().any(|d| open.starts_with(d)) {
        return None;
    }
    let value = KEYS.iter().find_map(|key| {
        let at = open.windows(key.len()).position(|w| w == *key)?;
        open.get(at + key.len()..)
    })?;
    // str8 / sym8 have a one-byte length, str32 / sym32 a four-byte one.
    let (length, start): (usize, usize) = match value.first()? {
        0xa1 | 0xa3 => (usize::from(*value.get(1)?), 2),
        0xb1 | 0xb3 => (
            u32::from_be_bytes(value.get(1..5)?.try_into().ok()?) as usize,
            5,
        ),
        _ => return None,
    };
    let text = value.get(start..start.checked_add(length)?)?;
    String::from_utf8(text.to_vec()).ok()
}

/// Copies the first bytes read from the broker aside, for [`broker_version`].
#[derive(Debug)]
struct Sniffing {
    inner: TcpStream,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Sniffing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let mut seen = self.seen.lock().expect("sniffed bytes poisoned");
        let room = SNIFF_LIMIT.saturating_sub(seen.len());
        let new = &buf.filled()[before..];
        seen.extend_from_slice(&new[..new.len().min(room)]);
        polled
    }
}

impl AsyncWrite for Sniffing {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use fe2o3_amqp::types::performatives::{ChannelMax, MaxFrameSize, Open};

    use super::*;

    fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
        let size = u32::try_from(8 + body.len()).expect("small frame");
        let mut frame = size.to_be_bytes().to_vec();
        frame.extend_from_slice(&[2, kind, 0, 0]);
        frame.extend_from_slice(body);
        frame
    }

    #[test]
    fn the_broker_version_is_read_from_its_open_frame() {
        let mut properties = Fields::new();
        properties.insert(Symbol::from("product"), Value::String("RabbitMQ".into()));
        properties.insert(Symbol::from("version"), Value::String("4.0.5".into()));
        let open = Open {
            container_id: "rabbit@host".into(),
            hostname: None,
            max_frame_size: MaxFrameSize::default(),
            channel_max: ChannelMax::default(),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: Some(properties),
        };
        let mut bytes = b"AMQP\x03\x01\x00\x00".to_vec();
        bytes.extend(frame(1, b"sasl-mechanisms"));
        bytes.extend(frame(1, b"sasl-outcome"));
        bytes.extend(b"AMQP\x00\x01\x00\x00");
        let open_frame = frame(0, &serde_amqp::to_vec(&open).expect("encodes"));
        bytes.extend(&open_frame);
        assert_eq!(broker_version(&bytes).as_deref(), Some("4.0.5"));
        // Cut short (the limit was reached) or garbled: unknown, never a panic.
        assert_eq!(broker_version(&bytes[..bytes.len() - 3]), None);
        assert_eq!(
            broker_version(b"AMQP\x00\x01\x00\x00\x00\x00\x00\x02"),
            None
        );
        assert_eq!(broker_version(b""), None);
        // A length no frame holds (4 GiB here) is refused, not allocated.
        let mut huge = b"AMQP\x00\x01\x00\x00\0\0\0\x1e\x02\0\0\0".to_vec();
        huge.extend(b"\x00\x53\x10\xa3\x07version\xb1\xff\xff\xff\xff4.0.5");
        assert_eq!(huge.len(), 8 + 0x1e);
        assert_eq!(broker_version(&huge), None);
    }
}
