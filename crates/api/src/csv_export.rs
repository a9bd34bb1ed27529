//! CSV exports through the `csv` crate (quoting, embedded newlines), with text cells a
//! spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first)
//! neutralised by a leading `'` (OWASP "CSV injection"). Numbers are written as numbers.

use std::borrow::Cow;

/// One cell.
pub enum Cell<'a> {
    /// Text from a record (neutralised when it could start a formula).
    Text(&'a str),
    /// A number (never neutralised: `-900` stays a number).
    Number(i64),
}

/// Text that cannot start a formula.
pub fn neutralise(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

/// A CSV document with `header` and `rows`.
///
/// # Errors
/// Only if the writer fails (it writes to memory).
pub fn document<'a>(
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<Cell<'a>>>,
) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header)?;
    for row in rows {
        writer.write_record(row.iter().map(|cell| match cell {
            Cell::Text(text) => neutralise(text).into_owned(),
            Cell::Number(n) => n.to_string(),
        }))?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_prefixes_are_neutralised_and_numbers_are_not() {
        let bytes = document(
            &["reference", "amount"],
            [
                vec![
                    Cell::Text("=HYPERLINK(\"http://x\",\"y\")"),
                    Cell::Number(-900),
                ],
                vec![Cell::Text("+1"), Cell::Number(5)],
                vec![Cell::Text("@SUM(A1)"), Cell::Number(0)],
                vec![Cell::Text("-2,\nsecond line"), Cell::Number(1)],
                vec![Cell::Text("renewal:abc"), Cell::Number(2)],
            ],
        )
        .unwrap();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let rows: Vec<(String, String)> = reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r[0].to_owned(), r[1].to_owned())
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "'=HYPERLINK(\"http://x\",\"y\")".to_owned(),
                    "-900".to_owned()
                ),
                ("'+1".to_owned(), "5".to_owned()),
                ("'@SUM(A1)".to_owned(), "0".to_owned()),
                ("'-2,\nsecond line".to_owned(), "1".to_owned()),
                ("renewal:abc".to_owned(), "2".to_owned()),
            ]
        );
    }
}
