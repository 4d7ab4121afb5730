//! Just enough CSV for `imctl user add --csv`: comma-separated fields, optional double quotes
//! (a quoted field may hold commas, newlines and `""` for a quote), blank lines and lines
//! starting with `#` skipped.

/// Splits `text` into records of fields.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut field_started = false;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if !field_started => {
                quoted = true;
                field_started = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field).trim().to_owned());
                field_started = false;
            }
            '\r' => {}
            '\n' => {
                line += 1;
                record.push(std::mem::take(&mut field).trim().to_owned());
                field_started = false;
                push_record(&mut records, std::mem::take(&mut record));
            }
            c if c.is_whitespace() && !field_started => {}
            _ => {
                field_started = true;
                field.push(c);
            }
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted field is not closed"));
    }
    if field_started || !record.is_empty() {
        record.push(field.trim().to_owned());
        push_record(&mut records, record);
    }
    Ok(records)
}

fn push_record(records: &mut Vec<Vec<String>>, record: Vec<String>) {
    let blank = record.iter().all(String::is_empty);
    let comment = record.first().is_some_and(|f| f.starts_with('#'));
    if !blank && !comment {
        records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_and_comments() {
        let text = "# users\nname,password,nick\n\namy, pw1 ,\"Amy, A.\"\r\nbob,\"p\"\"w\",\"two\nlines\"\ncid,pw";
        let r = parse(text).unwrap();
        assert_eq!(
            r,
            vec![
                vec!["name", "password", "nick"],
                vec!["amy", "pw1", "Amy, A."],
                vec!["bob", "p\"w", "two\nlines"],
                vec!["cid", "pw"],
            ]
        );
        assert!(parse("a,\"open").unwrap_err().contains("line 1"));
    }
}
