//! SQLite databases for the dump tests, made and read with rusqlite directly (not through ferry).

use std::path::Path;

/// Table `t` of `path` holds exactly `rows` (one transaction: one fsync, not one per row).
pub fn make_sqlite(path: &Path, rows: &[(i64, &str)]) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    tx.execute_batch("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT); DELETE FROM t;")
        .unwrap();
    for (id, v) in rows {
        tx.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![id, v])
            .unwrap();
    }
    tx.commit().unwrap();
}

/// The rows of table `t`, by id.
pub fn sqlite_rows(path: &Path) -> Vec<(i64, String)> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}
