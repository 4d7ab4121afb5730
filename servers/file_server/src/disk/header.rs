//! The 960-byte header of an offline file (layout in [`super`]'s docs).

use super::DiskError;

/// Length of the header before the file bytes.
pub const HEADER_LEN: usize = 960;

/// (offset, length) of the header fields.
const TASK_ID: (usize, usize) = (0, 128);
const FROM: (usize, usize) = (128, 64);
const TO: (usize, usize) = (192, 64);
const CREATED: (usize, usize) = (256, 128);
const FILE_NAME: (usize, usize) = (384, 512);
const FILE_SIZE: (usize, usize) = (896, 64);

/// The header of an offline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineHeader {
    /// Task id.
    pub task_id: String,
    /// Uploader.
    pub from: u32,
    /// Receiver.
    pub to: u32,
    /// Unix seconds of the upload's start.
    pub create_time: u64,
    /// Original file name (empty in the original's files).
    pub file_name: String,
    /// File size in bytes.
    pub file_size: u32,
}

fn put(buf: &mut [u8; HEADER_LEN], (at, len): (usize, usize), value: &str) {
    // One byte stays NUL: the original reads these fields as C strings.
    let mut n = value.len().min(len - 1);
    while !value.is_char_boundary(n) {
        n -= 1;
    }
    buf[at..at + n].copy_from_slice(&value.as_bytes()[..n]);
}

fn field(buf: &[u8; HEADER_LEN], (at, len): (usize, usize)) -> &[u8] {
    let raw = &buf[at..at + len];
    let end = raw.iter().position(|b| *b == 0).unwrap_or(len);
    &raw[..end]
}

fn number(buf: &[u8; HEADER_LEN], f: (usize, usize), name: &'static str) -> Result<u64, DiskError> {
    let raw = field(buf, f);
    let text = String::from_utf8_lossy(raw);
    let t = text.trim();
    // The original writes create_time with "%ld"; a negative time means "long ago".
    if let Some(neg) = t.strip_prefix('-')
        && neg.parse::<u64>().is_ok()
    {
        return Ok(0);
    }
    t.parse::<u64>().map_err(|_| DiskError::BadNumber {
        field: name,
        value: t.to_owned(),
    })
}

impl OfflineHeader {
    /// The 960 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut buf = [0u8; HEADER_LEN];
        put(&mut buf, TASK_ID, &self.task_id);
        put(&mut buf, FROM, &self.from.to_string());
        put(&mut buf, TO, &self.to.to_string());
        put(&mut buf, CREATED, &self.create_time.to_string());
        put(&mut buf, FILE_NAME, &self.file_name);
        put(&mut buf, FILE_SIZE, &self.file_size.to_string());
        buf
    }

    /// Reads the 960 header bytes.
    pub fn decode(buf: &[u8; HEADER_LEN]) -> Result<Self, DiskError> {
        let id = |n: u64, field: &'static str| {
            u32::try_from(n).map_err(|_| DiskError::BadNumber {
                field,
                value: n.to_string(),
            })
        };
        Ok(OfflineHeader {
            task_id: String::from_utf8_lossy(field(buf, TASK_ID)).into_owned(),
            from: id(number(buf, FROM, "from_user_id")?, "from_user_id")?,
            to: id(number(buf, TO, "to_user_id")?, "to_user_id")?,
            create_time: number(buf, CREATED, "create_time")?,
            file_name: String::from_utf8_lossy(field(buf, FILE_NAME)).into_owned(),
            file_size: id(number(buf, FILE_SIZE, "file_size")?, "file_size")?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn header() -> OfflineHeader {
        OfflineHeader {
            task_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            from: 7,
            to: 4_000_000_000,
            create_time: 1_700_000_000,
            file_name: "report ü.pdf".into(),
            file_size: 70_000,
        }
    }

    #[test]
    fn header_layout_matches_the_original() {
        let h = header();
        let b = h.encode();
        assert_eq!(&b[0..36], h.task_id.as_bytes());
        assert!(b[36..128].iter().all(|x| *x == 0));
        assert_eq!(&b[128..130], b"7\0");
        assert_eq!(&b[192..203], b"4000000000\0");
        assert_eq!(&b[256..267], b"1700000000\0");
        assert_eq!(
            &b[384..384 + "report ü.pdf".len()],
            "report ü.pdf".as_bytes()
        );
        assert_eq!(&b[896..902], b"70000\0");
        assert_eq!(OfflineHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn long_names_keep_a_nul_and_whole_characters() {
        let h = OfflineHeader {
            file_name: "é".repeat(400),
            ..header()
        };
        let b = h.encode();
        assert_eq!(b[384 + 511], 0, "the field ends with a NUL");
        let back = OfflineHeader::decode(&b).unwrap();
        assert_eq!(back.file_name, "é".repeat(255));
    }

    #[test]
    fn bad_numbers_are_errors() {
        let mut b = header().encode();
        b[128..131].copy_from_slice(b"abc");
        assert!(matches!(
            OfflineHeader::decode(&b),
            Err(DiskError::BadNumber {
                field: "from_user_id",
                ..
            })
        ));
        let mut b = header().encode();
        b[256..260].copy_from_slice(b"-5\0\0");
        assert_eq!(OfflineHeader::decode(&b).unwrap().create_time, 0);
    }
}
