//! `kind = "sql"`: the answer's query run on an embedded SQLite database built from the
//! spec's schema + data file, its rows compared with the gold query's. Row order counts
//! only when the gold query orders its rows; duplicate rows always count (a multiset).
//! The database is read-only to the query, and a query past its time is interrupted.

use super::verifiers::{lookup, Input, Verdict, Verifier};
use rusqlite::types::ValueRef;
use std::time::{Duration, Instant};

pub struct Sql {
    /// The schema + data script (`CREATE TABLE …; INSERT …;`).
    pub script: String,
    /// Record path of the gold query.
    pub gold: String,
    pub timeout: Duration,
}

/// One cell, compared by value: integers and reals as numbers, text, blobs, NULL.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Cell {
    Null,
    Num(f64),
    Text(String),
    Blob(Vec<u8>),
}

type Rows = Vec<Vec<Cell>>;

/// Builds the database from `script`, checking it runs (the spec's check).
pub fn open(script: &str) -> Result<rusqlite::Connection, String> {
    let c = rusqlite::Connection::open_in_memory().map_err(|e| e.to_string())?;
    c.execute_batch(script).map_err(|e| e.to_string())?;
    c.pragma_update(None, "query_only", true)
        .map_err(|e| e.to_string())?;
    // No ATTACH: it would create files on this machine and read other databases.
    c.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)
        .map_err(|e| e.to_string())?;
    Ok(c)
}

/// The query in an answer: the last ```sql block, else the last fenced block, else the
/// text; trailing semicolons and whitespace removed.
pub fn extract_query(text: &str) -> String {
    let code = super::exec::extract_code(text, &["sql", "sqlite"]);
    code.trim().trim_end_matches(';').trim().to_string()
}

/// Whether a query orders its result: an `ORDER BY` outside parentheses.
fn ordered(q: &str) -> bool {
    let upper = q.to_ascii_uppercase();
    let mut depth = 0i32;
    let bytes = upper.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'O' if depth == 0 && upper[i..].starts_with("ORDER") => {
                let rest = upper[i + 5..].trim_start();
                if rest.starts_with("BY") {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn run(c: &rusqlite::Connection, q: &str, timeout: Duration) -> Result<Rows, String> {
    let started = Instant::now();
    c.progress_handler(1000, Some(move || started.elapsed() > timeout));
    let result = (|| {
        let mut st = c.prepare(q).map_err(|e| e.to_string())?;
        let n = st.column_count();
        let mut rows = st.query([]).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| e.to_string())? {
            let mut row = Vec::with_capacity(n);
            for k in 0..n {
                row.push(match r.get_ref(k).map_err(|e| e.to_string())? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(i) => Cell::Num(i as f64),
                    ValueRef::Real(f) => Cell::Num(f),
                    ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                });
            }
            out.push(row);
            if out.len() > 1_000_000 {
                return Err("more than 1,000,000 rows".to_string());
            }
        }
        Ok(out)
    })();
    c.progress_handler(0, None::<fn() -> bool>);
    result.map_err(|e| {
        if e.contains("interrupted") {
            format!("timeout after {timeout:.0?}")
        } else {
            e
        }
    })
}

fn same(a: &[Cell], b: &[Cell]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Cell::Num(p), Cell::Num(q)) => (p - q).abs() <= 1e-9 * p.abs().max(q.abs()).max(1.0),
            _ => x == y,
        })
}

fn sort(rows: &mut Rows) {
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
}

/// Compares a query's rows with the gold query's on a fresh copy of the database.
pub fn compare(script: &str, query: &str, gold: &str, timeout: Duration) -> Verdict {
    let c = match open(script) {
        Ok(c) => c,
        Err(e) => return Verdict::fail(format!("error: the database script fails: {e}")),
    };
    if query.is_empty() {
        return Verdict::fail("no query in the answer");
    }
    let mut want = match run(&c, gold, timeout) {
        Ok(r) => r,
        Err(e) => return Verdict::fail(format!("error: the gold query fails: {e}")),
    };
    let mut got = match run(&c, query, timeout) {
        Ok(r) => r,
        Err(e) => return Verdict::fail(e),
    };
    let in_order = ordered(gold);
    if !in_order {
        sort(&mut want);
        sort(&mut got);
    }
    if want.len() != got.len() {
        return Verdict::fail(format!(
            "{} rows, the gold query gives {}",
            got.len(),
            want.len()
        ));
    }
    if let Some(k) = want.iter().zip(&got).position(|(a, b)| !same(a, b)) {
        return Verdict::fail(format!(
            "row {} differs{}: {:?} vs the gold {:?}",
            k + 1,
            if in_order {
                " (the gold query orders its rows)"
            } else {
                ""
            },
            got[k],
            want[k]
        ));
    }
    Verdict::pass()
}

impl Verifier for Sql {
    fn name(&self) -> &str {
        "sql"
    }
    fn check(&self, i: &Input<'_>) -> Verdict {
        let gold = match lookup(i.record, &self.gold) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Verdict::fail(format!("record has no gold query field {:?}", self.gold)),
        };
        compare(
            &self.script,
            &extract_query(i.response),
            gold.trim().trim_end_matches(';'),
            self.timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: &str = "CREATE TABLE p(id INTEGER, name TEXT, price REAL, cat TEXT);
        INSERT INTO p VALUES (1, 'pen', 1.5, 'office'), (2, 'desk', 120, 'office'),
                             (3, 'apple', 0.5, 'food'), (4, 'pear', 0.5, 'food');";
    const T: Duration = Duration::from_secs(2);

    fn ok(q: &str, gold: &str) -> bool {
        let v = compare(DB, &extract_query(q), gold, T);
        v.pass
    }

    #[test]
    fn rows_match_as_a_multiset_unless_the_gold_orders_them() {
        let gold = "SELECT name FROM p WHERE cat = 'food'";
        assert!(ok("SELECT name FROM p WHERE price < 1", gold));
        assert!(ok(
            "```sql\nSELECT name FROM p WHERE cat='food' ORDER BY name DESC;\n```",
            gold
        ));
        assert!(!ok("SELECT name FROM p", gold));
        // Ordered gold: the order is part of the answer.
        let gold = "SELECT name FROM p ORDER BY price, name";
        assert!(ok("SELECT name FROM p ORDER BY price ASC, name ASC", gold));
        assert!(!ok("SELECT name FROM p ORDER BY name", gold));
        // An ORDER BY inside a subquery does not order the result.
        assert!(!ordered("SELECT * FROM (SELECT name FROM p ORDER BY name)"));
        // Duplicates count: DISTINCT drops one of the two 0.5 rows.
        let gold = "SELECT price FROM p WHERE cat = 'food'";
        assert!(ok("SELECT price FROM p WHERE price = 0.5", gold));
        assert!(!ok("SELECT DISTINCT price FROM p WHERE cat = 'food'", gold));
        // Numbers compare by value (integer 120 vs real 120.0).
        assert!(ok("SELECT 120.0", "SELECT price FROM p WHERE id = 2"));
    }

    #[test]
    fn errors_timeouts_and_writes_are_fail_reasons() {
        let v = compare(DB, "SELEC name FROM p", "SELECT name FROM p", T);
        assert!(
            !v.pass && v.reason.as_deref().unwrap().contains("syntax"),
            "{v:?}"
        );
        let v = compare(DB, "DELETE FROM p", "SELECT name FROM p", T);
        assert!(!v.pass, "{v:?}");
        let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
        let v = compare(DB, slow, "SELECT 1", Duration::from_millis(200));
        assert!(
            !v.pass && v.reason.as_deref().unwrap().contains("timeout"),
            "{v:?}"
        );
        let v = compare(DB, "SELECT name FROM nope", "SELECT name FROM p", T);
        assert!(
            v.reason.as_deref().unwrap().contains("no such table"),
            "{v:?}"
        );
        let v = compare(DB, "", "SELECT 1", T);
        assert!(!v.pass);
        // ATTACH would create a file and open other databases.
        let f = std::env::temp_dir().join(format!("flywheel-attach-{}.db", std::process::id()));
        let q = format!("ATTACH DATABASE '{}' AS e", f.display());
        let v = compare(DB, &q, "SELECT 1", T);
        assert!(!v.pass && !f.exists(), "{v:?}");
    }
}
