//! The node's receipt frames, told apart from deliveries and counted by kind.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::shared::FrameData;

/// The receipt frames of the node: `{"data": {"purpose": "receipts", "positions": [...]}}`
/// first on every socket, then `{"data": {"purpose": "receipt", "event": "delivered" |
/// "read", ...}}` as members' positions move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The positions frame a socket gets first.
    Positions,
    Delivered,
    Read,
    /// A `receipt` frame of an event this bench does not know.
    Other,
}

impl ReceiptKind {
    pub(super) fn of(data: &FrameData<'_>) -> Option<Self> {
        Self::classify(data.purpose.as_deref(), data.event.as_deref())
    }

    /// What a frame's `purpose` and `event` make of it; `None`: not a receipt.
    pub fn classify(purpose: Option<&str>, event: Option<&str>) -> Option<Self> {
        match (purpose?, event) {
            ("receipts", _) => Some(Self::Positions),
            ("receipt", Some("delivered")) => Some(Self::Delivered),
            ("receipt", Some("read")) => Some(Self::Read),
            ("receipt", _) => Some(Self::Other),
            _ => None,
        }
    }
}

/// Receipt frames received, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiptFrames {
    /// `receipts` frames (one per socket opened).
    pub positions: u64,
    pub delivered: u64,
    pub read: u64,
    pub other: u64,
}

impl ReceiptFrames {
    pub fn total(&self) -> u64 {
        self.positions + self.delivered + self.read + self.other
    }
}

/// Shared counters of receipt frames.
#[derive(Default)]
pub struct ReceiptCounter([AtomicU64; 4]);

impl ReceiptCounter {
    pub fn count(&self, kind: ReceiptKind) {
        self.0[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> ReceiptFrames {
        let n = |kind: ReceiptKind| self.0[kind as usize].load(Ordering::Relaxed);
        ReceiptFrames {
            positions: n(ReceiptKind::Positions),
            delivered: n(ReceiptKind::Delivered),
            read: n(ReceiptKind::Read),
            other: n(ReceiptKind::Other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_are_classified_by_purpose_and_event() {
        use ReceiptKind::*;
        assert_eq!(
            ReceiptKind::classify(Some("receipts"), None),
            Some(Positions)
        );
        assert_eq!(
            ReceiptKind::classify(Some("receipt"), Some("delivered")),
            Some(Delivered)
        );
        assert_eq!(
            ReceiptKind::classify(Some("receipt"), Some("read")),
            Some(Read)
        );
        assert_eq!(ReceiptKind::classify(Some("receipt"), None), Some(Other));
        assert_eq!(
            ReceiptKind::classify(Some("new_chat_message"), Some("message")),
            None
        );
        assert_eq!(ReceiptKind::classify(None, Some("read")), None);
    }
}
