//! The table of tasks in progress, by id.
//!
//! A mutex'd map rather than an owning task: it is touched only to create, find and drop
//! tasks (msg_server requests, logins, the expiry sweep), never on the data path, where each
//! connection holds its task directly. Lock order: the table before a task, never the
//! reverse. Only tasks in progress are held (waiting, transferring, uploading, downloading);
//! a stored offline file is found on disk, so `max_tasks` bounds memory, not storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::task::Task;

/// The table is full (`max_tasks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task table full ({0} tasks)")]
pub struct TableFull(pub usize);

/// The tasks in progress, by id.
#[derive(Debug)]
pub struct TaskTable {
    map: Mutex<HashMap<String, Arc<Task>>>,
    max: usize,
}

impl TaskTable {
    /// An empty table holding at most `max` tasks.
    pub fn new(max: usize) -> Self {
        TaskTable {
            map: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Task>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a new task (ids are random UUIDs: a clash replaces nothing and fails).
    pub fn insert(&self, task: Arc<Task>) -> Result<(), TableFull> {
        let mut m = self.lock();
        if m.len() >= self.max || m.contains_key(&task.id) {
            return Err(TableFull(m.len()));
        }
        m.insert(task.id.clone(), task);
        Ok(())
    }

    /// The task already held under `task.id`, or `task` added.
    pub fn get_or_insert(&self, task: Arc<Task>) -> Result<Arc<Task>, TableFull> {
        let mut m = self.lock();
        if let Some(t) = m.get(&task.id) {
            return Ok(t.clone());
        }
        if m.len() >= self.max {
            return Err(TableFull(m.len()));
        }
        m.insert(task.id.clone(), task.clone());
        Ok(task)
    }

    /// A task by id.
    pub fn get(&self, id: &str) -> Option<Arc<Task>> {
        self.lock().get(id).cloned()
    }

    /// True when a task of that id is held.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Removes `task` (only that very task, not a newer one of the same id); later logins
    /// on it are refused.
    pub fn remove(&self, task: &Arc<Task>) -> bool {
        let mut m = self.lock();
        let same = m.get(&task.id).is_some_and(|t| Arc::ptr_eq(t, task));
        if same {
            m.remove(&task.id);
        }
        task.retire();
        same
    }

    /// Removes `task` if no connection is attached (a download that ended).
    pub fn remove_if_idle(&self, task: &Arc<Task>) -> bool {
        let mut m = self.lock();
        if !task.retire_if_idle() {
            return false;
        }
        if m.get(&task.id).is_some_and(|t| Arc::ptr_eq(t, task)) {
            m.remove(&task.id);
            return true;
        }
        false
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every task (a snapshot).
    pub fn all(&self) -> Vec<Arc<Task>> {
        self.lock().values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Mode;

    #[test]
    fn table_bounds_and_identity() {
        let table = TaskTable::new(1);
        let t = Arc::new(Task::new("aa-1".into(), 1, 2, Mode::Online, "f".into(), 3));
        table.insert(t.clone()).unwrap_or_else(|e| panic!("{e}"));
        let u = Arc::new(Task::new("bb-2".into(), 1, 2, Mode::Online, "f".into(), 3));
        assert_eq!(table.insert(u.clone()), Err(TableFull(1)));
        let again = Arc::new(Task::new("aa-1".into(), 1, 2, Mode::Online, "f".into(), 3));
        assert!(
            table
                .get_or_insert(again.clone())
                .is_ok_and(|x| Arc::ptr_eq(&x, &t))
        );
        // Removing a stale copy leaves the held task alone.
        assert!(!table.remove(&again));
        assert_eq!(table.len(), 1);
        assert!(table.remove(&t));
        assert!(table.is_empty());
        assert_eq!(t.finish().map(|e| e.conns.len()), Some(0));
        assert!(t.finish().is_none());
    }
}
