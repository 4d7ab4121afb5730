//! A tokio-util codec that cuts a byte stream into [`Pdu`]s.
//!
//! Layout (see [`crate::pdu`]): `length u32 | version u16 | flag u16 | service_id u16 |
//! command_id u16 | seq_num u16 | reserved u16 | body`, big-endian, `length` counting the
//! header. The codec is pure code over a buffer: a partial frame is `Ok(None)`; a frame whose
//! length is below 16 (the original closes on 0 and underflows on 1..15) or above the link's cap
//! is a [`CodecError`], after which the caller closes that one connection (ARCHITECTURE.md
//! Decisions 1-2).

use std::io;

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

use crate::pdu::{HEADER_LEN, Header, Pdu};

/// Inbound cap on client links: 1 MiB (the largest legitimate client PDU, a 32 KiB file chunk,
/// is far below it).
pub const CLIENT_INBOUND_CAP: usize = 1 << 20;

/// Largest PDU we send to a client: below 400 KiB, because the Android client's frame decoder
/// refuses anything larger than 400 * 1024 bytes (PROTOCOL.md 2.1).
pub const CLIENT_OUTBOUND_CAP: usize = 400 * 1024 - 1;

/// Cap on server-to-server links in both directions: 64 MiB, since an original server can send
/// megabyte lists (IMAllUserRsp, IMOnlineUserInfo).
pub const SERVER_FRAME_CAP: usize = 64 << 20;

/// Most buffer space reserved ahead of the bytes actually received.
const MAX_RESERVE_STEP: usize = 64 * 1024;

/// Which kind of link a connection is; decides its frame caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A TeamTalk client (or a fake one) on msg_server, file_server...
    Client,
    /// A link between two servers, or an admin link.
    Server,
}

impl LinkKind {
    /// Largest frame accepted from the peer.
    pub const fn inbound_cap(self) -> usize {
        match self {
            LinkKind::Client => CLIENT_INBOUND_CAP,
            LinkKind::Server => SERVER_FRAME_CAP,
        }
    }

    /// Largest frame we may send to the peer.
    pub const fn outbound_cap(self) -> usize {
        match self {
            LinkKind::Client => CLIENT_OUTBOUND_CAP,
            LinkKind::Server => SERVER_FRAME_CAP,
        }
    }
}

/// A framing error; the connection it happened on must be closed.
#[derive(Debug, Error)]
pub enum CodecError {
    /// `length` is below the header size (0 included).
    #[error("frame length {0} is shorter than the 16-byte header")]
    TooShort(u32),
    /// `length` is above the inbound cap of this link.
    #[error("frame length {len} exceeds this link's cap of {cap} bytes")]
    TooLarge {
        /// Announced length.
        len: u32,
        /// The cap.
        cap: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame: {have} of {need} bytes")]
    Truncated {
        /// Bytes buffered.
        have: usize,
        /// Bytes the frame needs (0 when even the length field is incomplete).
        need: usize,
    },
    /// A PDU we were about to send is above the outbound cap of this link.
    #[error("outbound PDU of {len} bytes exceeds this link's limit of {cap} bytes")]
    OutboundTooLarge {
        /// PDU length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The PDU codec; one per connection.
#[derive(Debug, Clone, Copy)]
pub struct PduCodec {
    max_in: usize,
    max_out: usize,
}

impl PduCodec {
    /// A codec with the caps of `kind`.
    pub const fn new(kind: LinkKind) -> Self {
        PduCodec {
            max_in: kind.inbound_cap(),
            max_out: kind.outbound_cap(),
        }
    }

    /// A codec with explicit caps (tests, tools).
    pub const fn with_caps(max_in: usize, max_out: usize) -> Self {
        PduCodec { max_in, max_out }
    }

    /// Inbound cap.
    pub const fn max_in(&self) -> usize {
        self.max_in
    }

    /// Outbound cap.
    pub const fn max_out(&self) -> usize {
        self.max_out
    }

    /// Checks that a frame of `len` bytes may be sent on this link.
    pub fn check_outbound(&self, len: usize) -> Result<(), CodecError> {
        if len > self.max_out {
            return Err(CodecError::OutboundTooLarge {
                len,
                cap: self.max_out,
            });
        }
        Ok(())
    }
}

impl Decoder for PduCodec {
    type Item = Pdu;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Pdu>, CodecError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if (len as usize) < HEADER_LEN {
            return Err(CodecError::TooShort(len));
        }
        if len as usize > self.max_in {
            return Err(CodecError::TooLarge {
                len,
                cap: self.max_in,
            });
        }
        let len = len as usize;
        if src.len() < len {
            // Grow toward the announced length in bounded steps: reserving it all at once
            // would let four bytes from a peer allocate the whole cap (64 MiB on server links).
            src.reserve((len - src.len()).min(MAX_RESERVE_STEP));
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&frame[..HEADER_LEN]);
        let (_, header) = Header::parse(&head);
        frame.advance(HEADER_LEN);
        Ok(Some(Pdu {
            header,
            body: frame.freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Pdu>, CodecError> {
        match self.decode(src)? {
            Some(pdu) => Ok(Some(pdu)),
            None if src.is_empty() => Ok(None),
            None => {
                let need = if src.len() >= 4 {
                    u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize
                } else {
                    0
                };
                Err(CodecError::Truncated {
                    have: src.len(),
                    need,
                })
            }
        }
    }
}

impl Encoder<&Pdu> for PduCodec {
    type Error = CodecError;

    fn encode(&mut self, pdu: &Pdu, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.check_outbound(pdu.len())?;
        pdu.encode_to(dst);
        Ok(())
    }
}

impl Encoder<Pdu> for PduCodec {
    type Error = CodecError;

    fn encode(&mut self, pdu: Pdu, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(&pdu, dst)
    }
}
