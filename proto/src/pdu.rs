//! The PDU: a 16-byte big-endian header followed by a protobuf body.
//!
//! ```text
//!  0               4       6       8       10      12      14      16
//! +---------------+-------+-------+-------+-------+-------+-------+---------------
//! | length (u32)  |version| flag  |service|command|  seq  |reservd| body ...
//! +---------------+-------+-------+-------+-------+-------+-------+---------------
//!   length = 16 + body length; every field big-endian; version 1, flag 0, reserved 0.
//! ```
//!
//! Replies copy the request's `seq_num` ([`Pdu::reply`]); PDUs a server creates on its own
//! (notifications, deliveries to receivers) carry seq 0.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::command::{Command, command_name};
use crate::required::{self, RequiredError};

/// Size of the header in bytes.
pub const HEADER_LEN: usize = 16;

/// The only `version` value TeamTalk writes (`IM_PDU_VERSION`); never checked on receipt.
pub const PDU_VERSION: u16 = 1;

/// The header fields other than `length` (which is derived from the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Protocol version, 1.
    pub version: u16,
    /// Unused, 0.
    pub flag: u16,
    /// Service id (section 3 of PROTOCOL.md); informational for servers, relied on by clients.
    pub service_id: u16,
    /// Command id; globally unique, servers dispatch on it.
    pub command_id: u16,
    /// Request counter of the sender; copied into replies.
    pub seq_num: u16,
    /// Unused, 0.
    pub reserved: u16,
}

impl Header {
    /// A header with version 1 and zero flag/reserved.
    pub const fn new(service_id: u16, command_id: u16, seq_num: u16) -> Self {
        Header {
            version: PDU_VERSION,
            flag: 0,
            service_id,
            command_id,
            seq_num,
            reserved: 0,
        }
    }

    /// Parses the 16 header bytes; returns the `length` field and the header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> (u32, Header) {
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let length = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        (
            length,
            Header {
                version: u16_at(4),
                flag: u16_at(6),
                service_id: u16_at(8),
                command_id: u16_at(10),
                seq_num: u16_at(12),
                reserved: u16_at(14),
            },
        )
    }

    /// Writes the 16 header bytes for a PDU of `length` bytes in all.
    pub fn write(&self, length: u32, buf: &mut impl BufMut) {
        buf.put_u32(length);
        buf.put_u16(self.version);
        buf.put_u16(self.flag);
        buf.put_u16(self.service_id);
        buf.put_u16(self.command_id);
        buf.put_u16(self.seq_num);
        buf.put_u16(self.reserved);
    }
}

/// A PDU whose body has not been decoded.
///
/// Relaying a PDU (route_server, fan-out) never decodes it: the body [`Bytes`] is shared, and
/// [`Pdu::to_frame`] reproduces the received bytes exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    /// Header fields.
    pub header: Header,
    /// Protobuf body (may be empty).
    pub body: Bytes,
}

/// Why a body could not be turned into the expected message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BodyError {
    /// The PDU carries another command than the one asked for.
    #[error("expected command {expected:#06x} ({expected_name}), got {got:#06x}")]
    UnexpectedCommand {
        /// Command id of the requested message type.
        expected: u16,
        /// Its name.
        expected_name: &'static str,
        /// Command id in the header.
        got: u16,
    },
    /// A proto2 peer would refuse it: a required field is missing, or the bytes are malformed.
    #[error(transparent)]
    Required(#[from] RequiredError),
    /// prost could not decode it.
    #[error("{message}: {source}")]
    Decode {
        /// Message type.
        message: &'static str,
        /// prost's error.
        source: prost::DecodeError,
    },
}

impl Pdu {
    /// A PDU with the given header and body.
    pub fn new(header: Header, body: Bytes) -> Self {
        Pdu { header, body }
    }

    /// Encodes `msg` as the body of its command, with the given seq.
    pub fn from_msg<M: Command>(msg: &M, seq_num: u16) -> Self {
        Pdu {
            header: Header::new(M::SERVICE_ID, M::COMMAND_ID, seq_num),
            body: Bytes::from(msg.encode_to_vec()),
        }
    }

    /// A reply to `self`: `msg` under its own command, with `self`'s seq (PROTOCOL.md 2.2).
    pub fn reply<M: Command>(&self, msg: &M) -> Self {
        Pdu::from_msg(msg, self.header.seq_num)
    }

    /// Command id shortcut.
    pub fn command_id(&self) -> u16 {
        self.header.command_id
    }

    /// Seq shortcut.
    pub fn seq_num(&self) -> u16 {
        self.header.seq_num
    }

    /// Name of the command for logs (`"CID_MSG_DATA"`), or `"unknown"`.
    pub fn command_name(&self) -> &'static str {
        command_name(self.header.command_id).unwrap_or("unknown")
    }

    /// Total encoded length (header + body).
    pub fn len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Always false: a PDU has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Decodes the body as `M`, refusing what a proto2 parser would refuse.
    pub fn decode<M: Command>(&self) -> Result<M, BodyError> {
        if self.header.command_id != M::COMMAND_ID {
            return Err(BodyError::UnexpectedCommand {
                expected: M::COMMAND_ID,
                expected_name: M::NAME,
                got: self.header.command_id,
            });
        }
        decode_body::<M>(&self.body)
    }

    /// Appends the encoded PDU to `buf`.
    ///
    /// # Panics
    /// Never for bodies below 4 GiB; larger ones cannot exist (the codec caps frames far lower).
    pub fn encode_to(&self, buf: &mut BytesMut) {
        buf.reserve(self.len());
        let length = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self.header.write(length, buf);
        buf.extend_from_slice(&self.body);
    }

    /// The encoded PDU as one buffer, ready to be queued on one or many connections.
    pub fn to_frame(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.len());
        self.encode_to(&mut buf);
        buf.freeze()
    }
}

/// Decodes a body as `M` after the proto2 `required` check.
pub fn decode_body<M: Command>(body: &Bytes) -> Result<M, BodyError> {
    required::check::<M>(body)?;
    M::decode(body.clone()).map_err(|source| BodyError::Decode {
        message: M::NAME,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::im::other::ImHeartBeat;

    #[test]
    fn heartbeat_is_exactly_sixteen_bytes() {
        // PROTOCOL.md 2: 00 00 00 10 00 01 00 00 00 07 07 01 <seq> 00 00
        let frame = Pdu::from_msg(&ImHeartBeat {}, 0x0102).to_frame();
        assert_eq!(
            &frame[..],
            &[0, 0, 0, 16, 0, 1, 0, 0, 0, 7, 7, 1, 1, 2, 0, 0]
        );
    }

    #[test]
    fn header_round_trips() {
        let h = Header {
            version: 3,
            flag: 4,
            service_id: 5,
            command_id: 0x0506,
            seq_num: 0xfffe,
            reserved: 9,
        };
        let mut buf = BytesMut::new();
        h.write(1234, &mut buf);
        let arr: [u8; HEADER_LEN] = buf[..].try_into().unwrap_or([0; HEADER_LEN]);
        assert_eq!(Header::parse(&arr), (1234, h));
    }

    #[test]
    fn reply_copies_seq() {
        let req = Pdu::from_msg(&ImHeartBeat {}, 77);
        let rsp = req.reply(&crate::message::ImClientTimeRsp { server_time: 1 });
        assert_eq!(rsp.seq_num(), 77);
        assert_eq!(rsp.header.service_id, 3);
        assert_eq!(rsp.command_id(), 0x0306);
    }

    #[test]
    fn decode_checks_the_command() {
        let pdu = Pdu::from_msg(&ImHeartBeat {}, 1);
        assert!(matches!(
            pdu.decode::<crate::message::ImClientTimeRsp>(),
            Err(BodyError::UnexpectedCommand { got: 0x0701, .. })
        ));
        assert_eq!(pdu.decode::<ImHeartBeat>(), Ok(ImHeartBeat {}));
    }
}
