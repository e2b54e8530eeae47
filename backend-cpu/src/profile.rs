//! Optional per-op timing of the CPU backend (`protocell bench train --profile`).
//!
//! Off by default; when on, every backend entry point adds its wall time to a table keyed
//! by op name. The check when off is one relaxed atomic load.
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Option<HashMap<&'static str, (u64, f64)>>> = Mutex::new(None);

/// Turns op timing on or off (and clears the table when turning on).
pub fn set_profiling(on: bool) {
    if on {
        if let Ok(mut t) = TABLE.lock() {
            *t = Some(HashMap::new());
        }
    }
    ON.store(on, Ordering::Relaxed);
}

/// `(op, calls, seconds)` sorted by time, descending.
pub fn profile_report() -> Vec<(&'static str, u64, f64)> {
    let t = TABLE.lock().ok().and_then(|t| t.clone()).unwrap_or_default();
    let mut v: Vec<_> = t.into_iter().map(|(k, (n, s))| (k, n, s)).collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

/// Runs `f`, charging its time to `op` when profiling is on.
#[inline]
pub(crate) fn timed<T>(op: &'static str, f: impl FnOnce() -> T) -> T {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let s = t.elapsed().as_secs_f64();
    if let Ok(mut tab) = TABLE.lock() {
        let e = tab.get_or_insert_with(HashMap::new).entry(op).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += s;
    }
    r
}
