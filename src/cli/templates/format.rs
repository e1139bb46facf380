//! The command line's plain text table (what a template's fields look like is
//! [`crate::exoscale::describe`]'s).

/// Lays `rows` out in columns under `header`, two spaces apart; the last column is not
/// padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        text.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["a".to_string(), "long value".into(), "x".into()],
            vec!["bbbb".to_string(), "v".into(), "".into()],
        ];
        assert_eq!(
            table(&["H1", "H2", "H3"], &rows),
            vec!["H1    H2          H3", "a     long value  x", "bbbb  v"]
        );
    }
}
