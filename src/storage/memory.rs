//! An in-memory store for unit tests: the same contract as every backend.

use std::collections::HashMap;

use parking_lot::RwLock;

use super::{check_name, Kind, Storage, StorageError, StorageResult};

#[derive(Default)]
pub struct MemoryStorage {
    objects: RwLock<HashMap<(Kind, String), Vec<u8>>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// An independent copy of every object: the state a crash would leave.
    pub fn fork(&self) -> Self {
        Self {
            objects: RwLock::new(self.objects.read().clone()),
        }
    }
}

impl Storage for MemoryStorage {
    fn put(&self, kind: Kind, name: &str, data: &[u8]) -> StorageResult<()> {
        check_name(name)?;
        let mut m = self.objects.write();
        let key = (kind, name.to_string());
        if m.contains_key(&key) {
            return Err(StorageError::AlreadyExists {
                kind,
                name: name.to_string(),
            });
        }
        m.insert(key, data.to_vec());
        Ok(())
    }

    fn get(&self, kind: Kind, name: &str) -> StorageResult<Vec<u8>> {
        check_name(name)?;
        self.objects
            .read()
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| StorageError::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    fn get_range(&self, kind: Kind, name: &str, offset: u64, len: u64) -> StorageResult<Vec<u8>> {
        check_name(name)?;
        let m = self.objects.read();
        let data = m
            .get(&(kind, name.to_string()))
            .ok_or_else(|| StorageError::NotFound {
                kind,
                name: name.to_string(),
            })?;
        let end = offset.checked_add(len).filter(|e| *e <= data.len() as u64);
        match end {
            Some(end) => Ok(data[offset as usize..end as usize].to_vec()),
            None => Err(StorageError::Backend(format!(
                "range {offset}+{len} past the end of {kind} {name}"
            ))),
        }
    }

    fn list(&self, kind: Kind) -> StorageResult<Vec<(String, u64)>> {
        Ok(self
            .objects
            .read()
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, n), d)| (n.clone(), d.len() as u64))
            .collect())
    }

    fn delete(&self, kind: Kind, name: &str) -> StorageResult<()> {
        check_name(name)?;
        self.objects
            .write()
            .remove(&(kind, name.to_string()))
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound {
                kind,
                name: name.to_string(),
            })
    }

    fn location(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn memory_backend_passes_the_suite() {
        super::super::suite::run_all(Arc::new(MemoryStorage::new()));
    }
}
