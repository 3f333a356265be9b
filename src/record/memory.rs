use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::NaiveDate;

use super::{Day, HistoryStore, Record, RecordStore};
use crate::Result;

/// An in-memory record store and history: the embedded default, for
/// development and the demo. Both live as long as the process.
#[derive(Debug, Default)]
pub struct MemoryRecord {
    record: Mutex<Record>,
    days: Mutex<BTreeMap<NaiveDate, Day>>,
}

impl MemoryRecord {
    /// An empty record and history.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RecordStore for MemoryRecord {
    async fn load(&self) -> Result<Record> {
        Ok(*crate::sync::lock(&self.record))
    }

    async fn raise(&self, candidate: &Record) -> Result<Record> {
        let mut record = crate::sync::lock(&self.record);
        // A candidate from before a reset is refused.
        if candidate.generation >= record.generation {
            record.raise(candidate);
        }
        Ok(*record)
    }

    async fn reset(&self, to: &Record) -> Result<Record> {
        let mut record = crate::sync::lock(&self.record);
        *record = record.reset_to(to)?;
        Ok(*record)
    }
}

#[async_trait]
impl HistoryStore for MemoryRecord {
    async fn raise_days(
        &self,
        seen: &[Day],
        keep_from: Option<NaiveDate>,
        from: NaiveDate,
    ) -> Result<Vec<Day>> {
        let mut days = crate::sync::lock(&self.days);
        if let Some(keep_from) = keep_from {
            days.retain(|day, _| *day >= keep_from);
        }
        for d in seen {
            if keep_from.is_none_or(|k| d.day >= k) {
                days.entry(d.day)
                    .or_insert_with(|| Day::empty(d.day))
                    .raise(d);
            }
        }
        Ok(days.range(from..).map(|(_, d)| *d).collect())
    }
}
