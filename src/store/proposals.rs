//! The tracker's view of the database: which companies are in the proposal
//! to strike off, and the last stored state of a company (where a change
//! comes from), read on a connection of its own (WAL mode lets it read
//! while the writer writes), so the model need not hold them all.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::identity::{FileId, PathState};
use super::StoreError;
use crate::model::proposals::{LookupError, ProposalStore, StoredStatus};
use crate::model::strike_off::PROPOSAL;

pub struct SqliteProposals {
    conn: Connection,
    path: PathBuf,
    /// The file `conn` reads, to notice when the writer has recreated the
    /// database at the path (after it was deleted or moved: `identity`).
    file: Option<FileId>,
}

impl SqliteProposals {
    /// A connection that only reads, to the database at `path`, which must
    /// exist (the pipeline opens it for writing first). Opened read-write
    /// with `query_only` rather than read-only: the last connection to close
    /// checkpoints the WAL and deletes it, and a read-only one cannot, so
    /// a 30 MB WAL was left beside the database after every clean exit.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |e| StoreError::from_sqlite(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(2)).map_err(err)?;
        conn.pragma_update(None, "query_only", true).map_err(err)?;
        // A point query touches a few pages of one index: SQLite's default
        // 2 MB page cache is more than it needs.
        conn.pragma_update(None, "cache_size", -1024).map_err(err)?;
        super::schema::check_version(&conn, path)?;
        let file = FileId::of(path).ok().flatten();
        Ok(Self { conn, path: path.to_path_buf(), file })
    }

    /// Follows the database to a new file at the path. Until the writer has
    /// copied it back, the old (deleted or moved) file is still the truth and
    /// is read on; once another file is there, it is the writer's copy.
    /// Lookups are rare (only companies the filter cannot rule out), so one
    /// `stat` each costs nothing worth saving.
    fn follow_the_path(&mut self) {
        let Some(file) = self.file else { return };
        if file.check(&self.path) != PathState::Replaced {
            return;
        }
        match Self::open(&self.path) {
            Ok(reopened) => *self = reopened,
            // Someone else's file (the writer will not write to it either): read on.
            Err(e) => tracing::debug!("strike-off lookups stay on the open file: {e}"),
        }
    }
}

fn lookup_error(e: rusqlite::Error) -> LookupError {
    LookupError(e.to_string())
}

impl ProposalStore for SqliteProposals {
    fn status(&mut self, company: &str) -> Result<Option<StoredStatus>, LookupError> {
        self.follow_the_path();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT company_status, company_status_detail FROM companies WHERE company_number = ?1")
            .map_err(lookup_error)?;
        stmt.query_row([company], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(lookup_error)
    }

    fn for_each_in_proposal(&mut self, each: &mut dyn FnMut(&str)) -> Result<(), LookupError> {
        self.follow_the_path();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT company_number FROM companies WHERE company_status_detail = ?1")
            .map_err(lookup_error)?;
        let mut rows = stmt.query([PROPOSAL]).map_err(lookup_error)?;
        while let Some(row) = rows.next().map_err(lookup_error)? {
            each(row.get_ref(0).map_err(lookup_error)?.as_str().map_err(|e| LookupError(e.to_string()))?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::store::writer::{write_batch, RawEvents};
    use feedtop_proto::FeedInfo;
    use feedtop_proto::FeedKind;

    #[test]
    fn reads_what_the_writer_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::store::open(&path).unwrap();
        let mut model = Model::new(
            vec![FeedInfo { name: "companies".into(), kind: FeedKind::CompaniesHouse }],
            Default::default(),
            chrono::Utc::now(),
        );
        let mut facts = Vec::new();
        let at = chrono::Utc::now();
        for line in include_str!("../../tests/fixtures/ch-companies-sample.ndjson").lines() {
            if let Ok(ev) = feedtop_proto::ch::parse_event(line.as_bytes().to_vec()) {
                let kind = feedtop_proto::FeedMsgKind::Event(Box::new(ev));
                model.apply(feedtop_proto::FeedMsg { feed: model.feeds[0].info.name.clone(), at, kind }, &mut facts);
            }
        }
        write_batch(&mut conn, &facts, RawEvents::Full).unwrap();
        let mut store = SqliteProposals::open(&path).unwrap();
        // 15338660 entered (line 24) and never left; 14829301 was struck off.
        let status = |store: &mut SqliteProposals, company| store.status(company).unwrap();
        assert_eq!(status(&mut store, "15338660"), Some(("active".into(), Some(PROPOSAL.into()))));
        assert_eq!(status(&mut store, "14829301"), Some(("dissolved".into(), None)));
        assert_eq!(status(&mut store, "NEVER-SEEN"), None);
        let mut all = Vec::new();
        store.for_each_in_proposal(&mut |c| all.push(c.to_string())).unwrap();
        assert_eq!(all, ["15338660"]);
        assert!(store.conn.execute("DELETE FROM companies", []).is_err(), "it never writes");
    }

    /// After the database was deleted and the writer made it again at the
    /// path, lookups read the new file, not the unlinked one they had open.
    #[test]
    fn follows_the_database_to_a_new_file_at_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        drop(crate::store::open(&path).unwrap());
        let mut store = SqliteProposals::open(&path).unwrap();
        assert_eq!(store.status("15338660").unwrap(), None);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let fresh = crate::store::open(&path).unwrap();
        fresh
            .execute(
                "INSERT INTO companies (company_number, company_name, company_status, company_status_detail, timepoint, updated_at)
                 VALUES ('15338660', 'X LTD', 'active', ?1, 1, '2025-06-10T09:00:00.000Z')",
                [PROPOSAL],
            )
            .unwrap();
        assert_eq!(
            store.status("15338660").unwrap(),
            Some(("active".into(), Some(PROPOSAL.into()))),
            "read from the file now at the path"
        );
    }
}
