//! The one table renderer of the command line: every table on stdout
//! (run reports, upgrade steps, status) is laid out here, so they all read
//! alike.

/// `header` over `rows`: each column as wide as its widest cell, two
/// spaces apart; the last column is not padded, so long reasons do not
/// widen the table, and no line ends in spaces. Rows shorter than the
/// header get empty cells.
pub fn render<H: AsRef<str>>(header: &[H], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h.as_ref())).collect();
    for row in rows {
        for (w, cell) in widths
            .iter_mut()
            .zip(row.iter())
            .take(columns.saturating_sub(1))
        {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = cells.get(i).copied().unwrap_or("");
            if i + 1 < columns {
                text.push_str(cell);
                text.push_str(&" ".repeat(w - width(cell) + 2));
            } else {
                text.push_str(cell);
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(AsRef::as_ref).collect());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Characters, not bytes: `→` and `–` take one column.
fn width(text: &str) -> usize {
    text.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_the_last_one_is_free() {
        let rows = vec![
            vec!["general".into(), "w-1".into(), "replaced".into()],
            vec![
                "gpu".into(),
                "worker-long-name".into(),
                "FAILED: a long reason".into(),
            ],
        ];
        assert_eq!(
            render(&["POOL", "NODE", "RESULT"], &rows),
            "POOL     NODE              RESULT\n\
             general  w-1               replaced\n\
             gpu      worker-long-name  FAILED: a long reason\n"
        );
    }

    #[test]
    fn missing_cells_are_empty_and_no_line_ends_in_spaces() {
        let rows = vec![vec!["a→b".into()]];
        assert_eq!(render(&["STEP", "RESULT"], &rows), "STEP  RESULT\na→b\n");
    }
}
