//! The iteration table (`table.csv`): a header and one row of numbers per iteration or step.

use std::collections::VecDeque;

/// Rows kept from the start of a long run.
pub const TABLE_HEAD_ROWS: usize = 1_000;
/// Rows kept from the end of a long run.
pub const TABLE_TAIL_ROWS: usize = 1_000;

/// One row per iteration, step, node or segment. Long runs keep their first
/// [`TABLE_HEAD_ROWS`] and last [`TABLE_TAIL_ROWS`] rows; `omitted_rows` counts the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    pub omitted_rows: u64,
}

impl Table {
    /// The table as CSV: the header row, then the rows; numbers round-trip exactly.
    pub fn to_csv(&self) -> String {
        let mut csv = String::with_capacity(32 * (self.rows.len() + 1) * self.header.len().max(1));
        csv.push_str(&self.header.join(","));
        csv.push('\n');
        for row in &self.rows {
            for (i, value) in row.iter().enumerate() {
                if i > 0 {
                    csv.push(',');
                }
                write_number(&mut csv, *value);
            }
            csv.push('\n');
        }
        csv
    }

    /// A note for the warnings when rows were left out, if any were.
    pub(crate) fn omission_note(&self) -> Option<String> {
        (self.omitted_rows > 0).then(|| {
            format!(
                "table.csv lists the first {TABLE_HEAD_ROWS} and the last {TABLE_TAIL_ROWS} rows; {} rows in between are left out",
                self.omitted_rows
            )
        })
    }
}

/// Collects rows, keeping memory bounded however many iterations run.
#[derive(Debug)]
pub(crate) struct TableBuilder {
    header: Vec<String>,
    head: Vec<Vec<f64>>,
    tail: VecDeque<Vec<f64>>,
    total: u64,
}

impl TableBuilder {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> TableBuilder {
        TableBuilder {
            header: header.into_iter().map(Into::into).collect(),
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub fn push(&mut self, row: Vec<f64>) {
        debug_assert_eq!(
            row.len(),
            self.header.len(),
            "row width must match the header"
        );
        self.total += 1;
        if self.head.len() < TABLE_HEAD_ROWS {
            self.head.push(row);
            return;
        }
        if self.tail.len() == TABLE_TAIL_ROWS {
            self.tail.pop_front();
        }
        self.tail.push_back(row);
    }

    pub fn finish(self) -> Table {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let mut rows = self.head;
        rows.extend(self.tail);
        Table {
            header: self.header,
            rows,
            omitted_rows: self.total - kept,
        }
    }
}

/// Formats a number for CSV and labels: integers plainly, other numbers in the shortest form
/// that reads back exactly (exponent notation when very small or large), `nan`, `inf`, `-inf`.
pub fn format_number(value: f64) -> String {
    let mut text = String::new();
    write_number(&mut text, value);
    text
}

/// Appends [`format_number`]'s text for `value` to `out`.
pub fn write_number(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    let _ = if value.is_nan() {
        out.write_str("nan")
    } else if value.is_infinite() {
        out.write_str(if value > 0.0 { "inf" } else { "-inf" })
    } else if value == 0.0 || (1e-4..1e15).contains(&value.abs()) {
        write!(out, "{value}")
    } else {
        write!(out, "{value:e}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_and_stay_short() {
        assert_eq!(format_number(34.0), "34");
        assert_eq!(format_number(-0.5), "-0.5");
        assert_eq!(format_number(1e-10), "1e-10");
        assert_eq!(format_number(1.2345e20), "1.2345e20");
        assert_eq!(format_number(f64::NAN), "nan");
        assert_eq!(format_number(f64::NEG_INFINITY), "-inf");
        let awkward = 0.1 + 0.2;
        assert_eq!(format_number(awkward).parse::<f64>().unwrap(), awkward);
        assert_eq!(format_number(5e-324).parse::<f64>().unwrap(), 5e-324);
    }

    #[test]
    fn long_runs_keep_head_and_tail() {
        let mut builder = TableBuilder::new(["iteration", "error"]);
        let total = TABLE_HEAD_ROWS + TABLE_TAIL_ROWS + 123;
        for i in 1..=total {
            builder.push(vec![i as f64, 1.0 / i as f64]);
        }
        let table = builder.finish();
        assert_eq!(table.rows.len(), TABLE_HEAD_ROWS + TABLE_TAIL_ROWS);
        assert_eq!(table.omitted_rows, 123);
        assert_eq!(table.rows[0][0], 1.0);
        assert_eq!(table.rows[TABLE_HEAD_ROWS - 1][0], TABLE_HEAD_ROWS as f64);
        assert_eq!(
            table.rows[TABLE_HEAD_ROWS][0],
            (TABLE_HEAD_ROWS + 124) as f64
        );
        assert_eq!(table.rows.last().unwrap()[0], total as f64);
        assert!(table.omission_note().unwrap().contains("123 rows"));
        let csv = table.to_csv();
        assert!(csv.starts_with("iteration,error\n1,1\n2,0.5\n"));
    }
}
