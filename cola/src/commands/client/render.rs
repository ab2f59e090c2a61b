//! How answers are printed: as JSON (what the API answered, for scripts) or as a table for
//! people (aligned columns, like `kubectl get`).

use std::io::Write as _;

use serde_json::Value;

/// Prints `value` as indented JSON on stdout.
pub fn json(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints `value` as one line of JSON on stdout (a stream of them is NDJSON).
pub fn json_line(value: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Prints `rows` under `headers` in columns as wide as their widest cell, on stdout.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(aligned(headers, rows).as_bytes())?;
    Ok(())
}

fn aligned(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        text += cells.join("  ").trim_end();
        text.push('\n');
    }
    text
}

/// A JSON value as a table cell: strings without quotes, nothing for `null`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec!["01a2".to_owned(), "javascript".to_owned(), "ok".to_owned()],
            vec!["01a3".to_owned(), "c".to_owned(), String::new()],
        ];
        assert_eq!(
            aligned(&["ID", "LANGUAGE", "STATUS"], &rows),
            "ID    LANGUAGE    STATUS\n01a2  javascript  ok\n01a3  c\n"
        );
    }

    #[test]
    fn cells_show_values_as_people_read_them() {
        assert_eq!(cell(&json!("c")), "c");
        assert_eq!(cell(&json!(null)), "");
        assert_eq!(cell(&json!(3)), "3");
    }
}
