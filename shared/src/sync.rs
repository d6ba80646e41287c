//! Poison-tolerant locking of `std` locks, in one place.
//!
//! A `Mutex` or `RwLock` is poisoned when a thread panics while holding it. Our locks
//! guard plain state (caches, maps, counters, child-process handles) that is consistent
//! between any two statements, so the rest of the process keeps working with it instead
//! of panicking in turn: a panic in one task must not take a daemon down.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// [`Mutex::lock`] that recovers the guard of a poisoned lock.
pub trait MutexExt<T: ?Sized> {
    /// Locks, even if a panicking thread poisoned the lock.
    fn lock_or_recover(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> MutexExt<T> for Mutex<T> {
    fn lock_or_recover(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`RwLock::read`] and [`RwLock::write`] that recover the guard of a poisoned lock.
pub trait RwLockExt<T: ?Sized> {
    /// Read-locks, even if a panicking thread poisoned the lock.
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T>;
    /// Write-locks, even if a panicking thread poisoned the lock.
    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockExt<T> for RwLock<T> {
    fn read_or_recover(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_or_recover(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_locks() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let rw = std::sync::Arc::new(RwLock::new(1));
        let (m2, rw2) = (m.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            let _w = rw2.write().unwrap();
            panic!("poison both");
        })
        .join();
        assert!(m.is_poisoned() && rw.is_poisoned());
        *m.lock_or_recover() += 1;
        *rw.write_or_recover() += 1;
        assert_eq!((*m.lock_or_recover(), *rw.read_or_recover()), (2, 2));
    }
}
