use std::sync::Mutex;

use async_trait::async_trait;

use super::{Record, RecordStore};
use crate::Result;

/// An in-memory record store: the embedded default, for development and the demo.
/// The record lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryRecord {
    record: Mutex<Record>,
}

impl MemoryRecord {
    /// An empty record.
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
