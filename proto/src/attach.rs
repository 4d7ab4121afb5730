//! The original servers' `attach_data` records (PROTOCOL.md section 6).
//!
//! db_proxy, route_server and file_server copy `attach_data` from request to response
//! unchanged; the requesting server puts there what it needs to route the answer. Our servers
//! understand these records so that an original msg_server, db_proxy or route_server can sit in
//! the same cluster. All integers are u32 big-endian.
//!
//! ```text
//! handle record (12 bytes):  type | handle | service_type(0)
//! PDU record (16 + N bytes): type | handle | service_type(0) | pdu_len | pdu_len bytes
//! ```
//! The first 12 bytes of both are the same, so a handle can be read from either.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// `type` values of the records.
pub mod kind {
    /// A client connection handle.
    pub const HANDLE: u32 = 1;
    /// A PDU only (defined, unused by the original).
    pub const PDU: u32 = 2;
    /// Handle plus a serialized IMMsgData (group fan-out lookup).
    pub const HANDLE_AND_PDU: u32 = 3;
    /// A serialized IMPushToUserReq, handle 0 (presence lookup before a push).
    pub const PDU_FOR_PUSH: u32 = 4;
    /// Handle plus a serialized IMFileTransferReq (presence lookup before a file transfer).
    pub const HANDLE_AND_PDU_FOR_FILE: u32 = 5;
}

/// Length of the handle record.
pub const HANDLE_RECORD_LEN: usize = 12;

/// An attach record as the original writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRecord {
    /// One of [`kind`].
    pub kind: u32,
    /// Connection handle on the requesting server (0 when none).
    pub handle: u32,
    /// Always 0 in the original.
    pub service_type: u32,
    /// Embedded PDU body; `None` for the 12-byte handle record.
    pub pdu: Option<Bytes>,
}

/// Why bytes are not an attach record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttachError {
    /// Fewer than 12 bytes.
    #[error("attach_data of {0} bytes is shorter than a 12-byte handle record")]
    TooShort(usize),
    /// `pdu_len` points past the end.
    #[error("attach_data announces {announced} PDU bytes but holds {present}")]
    BadPduLength {
        /// Announced length.
        announced: u32,
        /// Bytes present.
        present: usize,
    },
}

impl AttachRecord {
    /// The 12-byte handle record (`CDbAttachData`).
    pub fn handle(handle: u32) -> Self {
        AttachRecord {
            kind: kind::HANDLE,
            handle,
            service_type: 0,
            pdu: None,
        }
    }

    /// A record carrying a PDU body (`CPduAttachData`).
    pub fn with_pdu(kind: u32, handle: u32, pdu: Bytes) -> Self {
        AttachRecord {
            kind,
            handle,
            service_type: 0,
            pdu: Some(pdu),
        }
    }

    /// Encodes the record.
    pub fn encode(&self) -> Bytes {
        let extra = self.pdu.as_ref().map_or(0, |p| 4 + p.len());
        let mut buf = BytesMut::with_capacity(HANDLE_RECORD_LEN + extra);
        buf.put_u32(self.kind);
        buf.put_u32(self.handle);
        buf.put_u32(self.service_type);
        if let Some(pdu) = &self.pdu {
            buf.put_u32(u32::try_from(pdu.len()).unwrap_or(u32::MAX));
            buf.extend_from_slice(pdu);
        }
        buf.freeze()
    }

    /// Decodes a record: 12 bytes give a handle record, 16 or more a PDU record.
    pub fn decode(b: &Bytes) -> Result<Self, AttachError> {
        if b.len() < HANDLE_RECORD_LEN {
            return Err(AttachError::TooShort(b.len()));
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut rec = AttachRecord {
            kind: u32_at(0),
            handle: u32_at(4),
            service_type: u32_at(8),
            pdu: None,
        };
        if b.len() >= 16 {
            let announced = u32_at(12);
            let present = b.len() - 16;
            if announced as usize > present {
                return Err(AttachError::BadPduLength { announced, present });
            }
            rec.pdu = Some(b.slice(16..16 + announced as usize));
        }
        Ok(rec)
    }
}

/// Magic that starts our own request tag (never a valid original record type, which is a
/// big-endian u32 in 1..=5).
pub const REQUEST_TAG_MAGIC: [u8; 4] = *b"imrq";

/// Length of an encoded [`RequestTag`].
pub const REQUEST_TAG_LEN: usize = 20;

/// Our msg_server's `attach_data` toward db_proxy: identifies a store request so that a retry
/// is never stored twice (Decisions 4). db_proxy copies attach_data unchanged, like every
/// TeamTalk peer, so an original db_proxy works with it too (it just does not de-duplicate).
///
/// ```text
/// "imrq" | origin u64 | seq u64      (big-endian)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestTag {
    /// Random id of the msg_server process.
    pub origin: u64,
    /// Per-process request counter; a retry reuses the same value.
    pub seq: u64,
}

impl RequestTag {
    /// Encodes the tag.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(REQUEST_TAG_LEN);
        buf.extend_from_slice(&REQUEST_TAG_MAGIC);
        buf.put_u64(self.origin);
        buf.put_u64(self.seq);
        buf.freeze()
    }

    /// Reads a tag from attach_data; `None` when it is something else (e.g. an original
    /// handle record).
    pub fn decode(b: &[u8]) -> Option<RequestTag> {
        if b.len() < REQUEST_TAG_LEN || b[..4] != REQUEST_TAG_MAGIC {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_be_bytes(a)
        };
        Some(RequestTag {
            origin: u64_at(4),
            seq: u64_at(12),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tag_round_trip_and_not_an_original_record() {
        let t = RequestTag {
            origin: 0x0102_0304_0506_0708,
            seq: 42,
        };
        let b = t.encode();
        assert_eq!(b.len(), REQUEST_TAG_LEN);
        assert_eq!(RequestTag::decode(&b), Some(t));
        assert_eq!(RequestTag::decode(&AttachRecord::handle(7).encode()), None);
        assert_eq!(RequestTag::decode(&b[..10]), None);
    }

    #[test]
    fn handle_record_layout() {
        let b = AttachRecord::handle(0x0102_0304).encode();
        assert_eq!(&b[..], &[0, 0, 0, 1, 1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(
            AttachRecord::decode(&b),
            Ok(AttachRecord::handle(0x0102_0304))
        );
    }

    #[test]
    fn pdu_record_round_trip_and_prefix() {
        let rec = AttachRecord::with_pdu(kind::HANDLE_AND_PDU, 9, Bytes::from_static(b"abc"));
        let b = rec.encode();
        assert_eq!(b.len(), 19);
        assert_eq!(&b[12..16], &[0, 0, 0, 3]);
        assert_eq!(AttachRecord::decode(&b), Ok(rec));
        // A handle can be read from the first 12 bytes of a PDU record.
        let h = AttachRecord::decode(&b.slice(..12)).map(|r| r.handle);
        assert_eq!(h, Ok(9));
    }

    #[test]
    fn bad_records() {
        assert_eq!(
            AttachRecord::decode(&Bytes::from_static(&[0; 5])),
            Err(AttachError::TooShort(5))
        );
        let mut b = AttachRecord::with_pdu(3, 1, Bytes::from_static(b"abc"))
            .encode()
            .to_vec();
        b.truncate(17);
        assert_eq!(
            AttachRecord::decode(&Bytes::from(b)),
            Err(AttachError::BadPduLength {
                announced: 3,
                present: 1
            })
        );
    }
}
