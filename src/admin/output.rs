//! What an admin command prints: a table (or `field: value` lines) for people, the same data
//! as JSON with `--json` for scripts.

use serde_json::Value;

/// One command's result, in both forms.
#[derive(Debug)]
pub struct Report {
    pub json: Value,
    pub text: String,
}

impl Report {
    pub fn render(&self, json: bool) -> String {
        if json {
            serde_json::to_string_pretty(&self.json).expect("a JSON value always serialises")
        } else {
            self.text.clone()
        }
    }
}

/// Columns padded to their widest cell, a header row first. Cells are single lines: a
/// newline or tab in a name would break the columns, so they are shown escaped.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| one_line(cell)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = vec![line(headers.to_vec())];
    out.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// `name: value` lines, names aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(name, _)| name.len()).max().unwrap_or(0) + 1;
    pairs
        .iter()
        .map(|(name, value)| format!("{:<width$} {}", format!("{name}:"), one_line(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(cell: &str) -> String {
    if cell.contains(['\n', '\r', '\t']) {
        cell.escape_default().to_string()
    } else {
        cell.to_string()
    }
}

/// An optional value as a cell: `-` for none.
pub fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_whatever_the_cell_widths() {
        let rows = vec![
            vec!["1".to_string(), "alice".to_string()],
            vec!["22".to_string(), "bo\nb".to_string()],
        ];
        assert_eq!(
            table(&["ID", "USERNAME"], &rows),
            "ID  USERNAME\n1   alice\n22  bo\\nb"
        );
        assert_eq!(table(&["ID"], &[]), "ID");
    }

    #[test]
    fn fields_align_their_names() {
        let text = fields(&[("id", "7".into()), ("username", "eve".into())]);
        assert_eq!(text, "id:       7\nusername: eve");
    }
}
