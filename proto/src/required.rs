//! The proto2 `required` check that prost does not do.
//!
//! protobuf 2.x parsers (every original TeamTalk client and server) refuse a message that lacks
//! a `required` field, or whose required enum field holds an undefined value, and the receiver
//! then drops the PDU. prost decodes such a body into zero values instead, so before decoding we
//! walk the wire bytes once against a table generated from the `.proto` files
//! (`generated/required.rs`) and refuse what the original would refuse.

use thiserror::Error;

/// Required-field layout of one message type.
#[derive(Debug)]
pub struct Schema {
    /// Full protobuf name, e.g. `IM.Message.IMMsgData`.
    pub name: &'static str,
    /// Field numbers labelled `required`.
    pub required: &'static [u32],
    /// Message-typed fields (any label), checked recursively.
    pub nested: &'static [NestedField],
    /// Required enum fields and their defined values.
    pub enums: &'static [EnumField],
}

/// A message-typed field of a message.
#[derive(Debug)]
pub struct NestedField {
    /// Field number.
    pub tag: u32,
    /// Layout of the field's message type.
    pub schema: &'static Schema,
}

/// A required enum field of a message.
#[derive(Debug)]
pub struct EnumField {
    /// Field number.
    pub tag: u32,
    /// The values the enum defines, sorted.
    pub values: &'static [i32],
}

/// Implemented by every generated message: its required-field layout.
pub trait RequiredFields {
    /// The message's layout.
    const SCHEMA: &'static Schema;
}

/// Why a body would be refused by a proto2 parser.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RequiredError {
    /// A required field is absent.
    #[error("{message}: required field {field} is missing")]
    Missing {
        /// Message type.
        message: &'static str,
        /// Field number.
        field: u32,
    },
    /// The bytes are not a valid protobuf encoding.
    #[error("{message}: malformed protobuf ({reason})")]
    Malformed {
        /// Message type.
        message: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

// Generated tables: one `Schema` static and one `RequiredFields` impl per message.
#[allow(missing_docs, clippy::all)]
mod table {
    include!("generated/required.rs");
}

/// Deepest nesting of groups we skip (messages nest by schema, which is finite).
const MAX_GROUP_DEPTH: usize = 32;

/// Checks that `buf`, the encoding of a `M`, carries every required field.
pub fn check<M: RequiredFields>(buf: &[u8]) -> Result<(), RequiredError> {
    check_schema(M::SCHEMA, buf)
}

/// Checks `buf` against an explicit schema.
pub fn check_schema(schema: &'static Schema, buf: &[u8]) -> Result<(), RequiredError> {
    let malformed = |reason| RequiredError::Malformed {
        message: schema.name,
        reason,
    };
    // Bit i set = schema.required[i] seen with an acceptable value.
    let mut seen: u64 = 0;
    let mut pos = 0usize;
    while pos < buf.len() {
        let key = read_varint(buf, &mut pos).ok_or_else(|| malformed("truncated key"))?;
        let field = u32::try_from(key >> 3).map_err(|_| malformed("field number too large"))?;
        if field == 0 {
            return Err(malformed("field number 0"));
        }
        let wire_type = (key & 7) as u8;
        let mut acceptable = true;
        match wire_type {
            0 => {
                let value =
                    read_varint(buf, &mut pos).ok_or_else(|| malformed("truncated varint"))?;
                if let Some(e) = schema.enums.iter().find(|e| e.tag == field) {
                    // Enums are int32 on the wire, sign-extended to 64 bits.
                    acceptable = e.values.binary_search(&(value as i64 as i32)).is_ok();
                }
            }
            1 => skip(buf, &mut pos, 8).ok_or_else(|| malformed("truncated fixed64"))?,
            5 => skip(buf, &mut pos, 4).ok_or_else(|| malformed("truncated fixed32"))?,
            2 => {
                let len =
                    read_varint(buf, &mut pos).ok_or_else(|| malformed("truncated length"))?;
                let len = usize::try_from(len).map_err(|_| malformed("length too large"))?;
                let end = pos.checked_add(len).filter(|&e| e <= buf.len());
                let end = end.ok_or_else(|| malformed("length beyond the buffer"))?;
                if let Some(n) = schema.nested.iter().find(|n| n.tag == field) {
                    check_schema(n.schema, &buf[pos..end])?;
                }
                pos = end;
            }
            3 => skip_group(buf, &mut pos, field, 0).ok_or_else(|| malformed("bad group"))?,
            _ => return Err(malformed("invalid wire type")),
        }
        if let Some(i) = schema.required.iter().position(|&t| t == field) {
            // prost keeps the last occurrence of a field, so an undefined enum value after a
            // valid one must count as missing again, or we would accept a value the original
            // never would have produced.
            if acceptable {
                seen |= 1u64 << (i & 63);
            } else {
                seen &= !(1u64 << (i & 63));
            }
        }
    }
    for (i, &field) in schema.required.iter().enumerate() {
        if seen & (1u64 << (i & 63)) == 0 {
            return Err(RequiredError::Missing {
                message: schema.name,
                field,
            });
        }
    }
    Ok(())
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        if shift == 63 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn skip(buf: &[u8], pos: &mut usize, n: usize) -> Option<()> {
    let end = pos.checked_add(n).filter(|&e| e <= buf.len())?;
    *pos = end;
    Some(())
}

fn skip_group(buf: &[u8], pos: &mut usize, field: u32, depth: usize) -> Option<()> {
    if depth > MAX_GROUP_DEPTH {
        return None;
    }
    loop {
        let key = read_varint(buf, pos)?;
        let inner = u32::try_from(key >> 3).ok()?;
        match key & 7 {
            0 => {
                read_varint(buf, pos)?;
            }
            1 => skip(buf, pos, 8)?,
            5 => skip(buf, pos, 4)?,
            2 => {
                let len = usize::try_from(read_varint(buf, pos)?).ok()?;
                skip(buf, pos, len)?;
            }
            3 => skip_group(buf, pos, inner, depth + 1)?,
            4 if inner == field => return Some(()),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::im::{base_define, buddy, message};
    use prost::Message;

    #[test]
    fn complete_message_passes() {
        let m = message::ImMsgData {
            from_user_id: 1,
            to_session_id: 2,
            msg_id: 0,
            create_time: 0,
            msg_type: base_define::MsgType::SingleText as i32,
            msg_data: bytes::Bytes::from_static(b"x"),
            attach_data: None,
        };
        assert_eq!(check::<message::ImMsgData>(&m.encode_to_vec()), Ok(()));
    }

    #[test]
    fn missing_required_field_is_refused() {
        // Only field 1 (from_user_id = 5).
        let buf = [0x08, 0x05];
        assert_eq!(
            check::<message::ImMsgData>(&buf),
            Err(RequiredError::Missing {
                message: "IM.Message.IMMsgData",
                field: 2
            })
        );
        // Empty body: first required field reported.
        assert!(matches!(
            check::<message::ImMsgData>(&[]),
            Err(RequiredError::Missing { field: 1, .. })
        ));
    }

    #[test]
    fn undefined_required_enum_value_counts_as_missing() {
        let mut m = message::ImMsgDataAck {
            user_id: 1,
            session_id: 2,
            msg_id: 3,
            session_type: 1,
        };
        assert!(check::<message::ImMsgDataAck>(&m.encode_to_vec()).is_ok());
        m.session_type = 9;
        assert_eq!(
            check::<message::ImMsgDataAck>(&m.encode_to_vec()),
            Err(RequiredError::Missing {
                message: "IM.Message.IMMsgDataAck",
                field: 4
            })
        );
    }

    #[test]
    fn an_undefined_enum_after_a_valid_one_is_missing() {
        // IMKickUser{user_id 1, kick_reason 1, kick_reason 9}: found by fuzzing; prost would
        // keep 9, which no proto2 peer accepts.
        let buf = [0x08, 0x01, 0x10, 0x01, 0x10, 0x09];
        assert!(matches!(
            check::<crate::login::ImKickUser>(&buf),
            Err(RequiredError::Missing { field: 2, .. })
        ));
        // The other order is fine: the last value is valid.
        let buf = [0x08, 0x01, 0x10, 0x09, 0x10, 0x01];
        assert_eq!(check::<crate::login::ImKickUser>(&buf), Ok(()));
    }

    #[test]
    fn nested_messages_are_checked() {
        // IMUsersInfoRsp with one UserInfo that lacks most required fields.
        let inner = [0x08, 0x07]; // user_id = 7
        let mut buf = vec![0x08, 0x01, 0x12, inner.len() as u8];
        buf.extend_from_slice(&inner);
        assert_eq!(
            check::<buddy::ImUsersInfoRsp>(&buf),
            Err(RequiredError::Missing {
                message: "IM.BaseDefine.UserInfo",
                field: 2
            })
        );
    }

    #[test]
    fn malformed_bytes_are_reported_not_panicked() {
        for bad in [
            &[0x08][..],
            &[0x12, 0x05, 0x01],
            &[0x0f],
            &[0x00, 0x01],
            &[0xff; 11],
        ] {
            assert!(matches!(
                check::<message::ImMsgData>(bad),
                Err(RequiredError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn unknown_fields_and_groups_are_skipped() {
        let m = message::ImClientTimeRsp { server_time: 9 };
        let mut buf = m.encode_to_vec();
        // field 99 varint, field 98 fixed32, field 97 group { field 1 varint }.
        buf.extend_from_slice(&[0x98, 0x06, 0x01]);
        buf.extend_from_slice(&[0x95, 0x06, 1, 2, 3, 4]);
        buf.extend_from_slice(&[0x8b, 0x06, 0x08, 0x01, 0x8c, 0x06]);
        assert_eq!(check::<message::ImClientTimeRsp>(&buf), Ok(()));
    }
}
