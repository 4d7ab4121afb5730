//! SQLite's page cache, wrapped so that a commit does not scan the whole cache.
//!
//! At the end of every write transaction SQLite drops cached pages beyond the end of the
//! database (`pager_end_transaction` -> `xTruncate(dbSize + 1)`). Its default cache skips
//! that when no page number above the end was ever cached since the last truncation; but
//! a b-tree balance that reorders its new pages swaps two page numbers through a temporary
//! one, the "pending byte" page (page 262,145 with 4 KiB pages, beyond the end of any
//! database under 1 GiB). That page number is gone again a moment later, yet the default
//! cache remembers it as its largest key, and the next truncation walks every slot and
//! every page of the cache: 16,000 of each with the writer's 64 MiB, at every commit that
//! split a page. `perf` put 17.5% of the writer thread there at 12,000 msgs/s.
//!
//! The wrapper forwards every call to SQLite's own cache and keeps the largest page number
//! cached other than that temporary one; a truncation above it has nothing to drop, so it
//! is not forwarded. Every other truncation is.

#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// SQLite's lock byte offset (`PENDING_BYTE`); the page holding it is never a database page.
const PENDING_BYTE: u32 = 0x4000_0000;

/// SQLite's own cache methods, saved when ours were installed.
struct Inner(ffi::sqlite3_pcache_methods2);

// SAFETY: the methods are plain C function pointers; `pArg` is SQLite's own and only passed
// back to SQLite.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();

static SKIPPED: AtomicU64 = AtomicU64::new(0);
static FORWARDED: AtomicU64 = AtomicU64::new(0);

/// What the page cache wrapper did since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageCacheStats {
    /// Whether the wrapper is installed (see [`install_page_cache`]).
    pub installed: bool,
    /// Truncations that had nothing to drop and were not passed on to SQLite.
    pub truncations_skipped: u64,
    /// Truncations passed on to SQLite's own cache.
    pub truncations_forwarded: u64,
}

/// The wrapper's counters.
pub fn page_cache_stats() -> PageCacheStats {
    PageCacheStats {
        installed: INSTALLED.get().copied().unwrap_or(false),
        truncations_skipped: SKIPPED.load(Ordering::Relaxed),
        truncations_forwarded: FORWARDED.load(Ordering::Relaxed),
    }
}

static INSTALLED: OnceLock<bool> = OnceLock::new();

/// One cache as SQLite sees it: SQLite's cache and what the wrapper tracks about it. SQLite
/// calls a cache's methods from the connection that owns it, one call at a time.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The temporary page number of b-tree balancing for this page size.
    swap_key: c_uint,
    /// Largest page number cached since the last forwarded truncation, other than
    /// `swap_key` (0: none).
    max_key: c_uint,
}

// INNER is set before SQLite is handed the methods that call this.
#[allow(clippy::expect_used)]
fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    &INNER
        .get()
        .expect("the wrapper is installed only after INNER is set")
        .0
}

/// Installs the wrapper for every SQLite connection the process opens from now on. Call it
/// at the start of `main`, before any thread could open a connection: SQLite's configuration
/// calls are not thread-safe against its initialization, and after the first connection
/// SQLite refuses (and keeps its own cache, which only costs speed). Returns whether the
/// wrapper is installed. `IM_SQLITE_OWN_PAGE_CACHE=1` in the environment leaves SQLite's own
/// cache in place (to compare, or to rule the wrapper out).
pub fn install_page_cache() -> bool {
    *INSTALLED.get_or_init(|| {
        if std::env::var_os("IM_SQLITE_OWN_PAGE_CACHE").is_some_and(|v| v == "1") {
            return false;
        }
        // SAFETY: sqlite3_config before sqlite3_initialize is the documented way to read
        // and replace the page cache methods; after initialization it returns
        // SQLITE_MISUSE and changes nothing.
        unsafe {
            let mut default: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
            if ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_GETPCACHE2,
                &mut default as *mut ffi::sqlite3_pcache_methods2,
            ) != ffi::SQLITE_OK
            {
                return false;
            }
            if default.xCreate.is_none()
                || default.xFetch.is_none()
                || default.xTruncate.is_none()
                || default.xRekey.is_none()
                || default.xDestroy.is_none()
            {
                return false;
            }
            if INNER.set(Inner(default)).is_err() {
                return false;
            }
            let ours = ffi::sqlite3_pcache_methods2 {
                iVersion: 1,
                pArg: std::ptr::null_mut(),
                xInit: Some(x_init),
                xShutdown: Some(x_shutdown),
                xCreate: Some(x_create),
                xCachesize: Some(x_cachesize),
                xPagecount: Some(x_pagecount),
                xFetch: Some(x_fetch),
                xUnpin: Some(x_unpin),
                xRekey: Some(x_rekey),
                xTruncate: Some(x_truncate),
                xDestroy: Some(x_destroy),
                xShrink: Some(x_shrink),
            };
            // SQLite copies the struct.
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PCACHE2,
                &ours as *const ffi::sqlite3_pcache_methods2,
            ) == ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn x_init(_arg: *mut c_void) -> c_int {
    let m = inner();
    match m.xInit {
        // SAFETY: SQLite's own init with SQLite's own argument.
        Some(f) => unsafe { f(m.pArg) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_shutdown(_arg: *mut c_void) {
    let m = inner();
    if let Some(f) = m.xShutdown {
        // SAFETY: as in x_init.
        unsafe { f(m.pArg) }
    }
}

unsafe extern "C" fn x_create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut ffi::sqlite3_pcache {
    let Some(create) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: forwarded unchanged.
    let raw = unsafe { create(sz_page, sz_extra, purgeable) };
    if raw.is_null() {
        return raw;
    }
    let page = u32::try_from(sz_page).unwrap_or(1).max(1);
    let cache = Box::new(Cache {
        inner: raw,
        swap_key: PENDING_BYTE / page + 1,
        max_key: 0,
    });
    Box::into_raw(cache).cast()
}

/// # Safety
/// `p` must come from [`x_create`] and not be destroyed.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    // SAFETY: the caller's contract; SQLite never calls one cache concurrently.
    unsafe { &mut *p.cast::<Cache>() }
}

unsafe extern "C" fn x_cachesize(p: *mut ffi::sqlite3_pcache, n: c_int) {
    // SAFETY: p is ours; the inner method gets the inner cache.
    unsafe {
        if let Some(f) = inner().xCachesize {
            f(cache(p).inner, n)
        }
    }
}

unsafe extern "C" fn x_pagecount(p: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: as in x_cachesize.
    unsafe { inner().xPagecount.map_or(0, |f| f(cache(p).inner)) }
}

unsafe extern "C" fn x_fetch(
    p: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as in x_cachesize; xFetch was checked at install.
    unsafe {
        let c = cache(p);
        let Some(fetch) = inner().xFetch else {
            return std::ptr::null_mut();
        };
        let page = fetch(c.inner, key, create);
        if !page.is_null() && key > c.max_key && key != c.swap_key {
            c.max_key = key;
        }
        page
    }
}

unsafe extern "C" fn x_unpin(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    discard: c_int,
) {
    // SAFETY: as in x_cachesize.
    unsafe {
        if let Some(f) = inner().xUnpin {
            f(cache(p).inner, page, discard)
        }
    }
}

unsafe extern "C" fn x_rekey(
    p: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    // SAFETY: as in x_fetch.
    unsafe {
        let c = cache(p);
        if let Some(f) = inner().xRekey {
            f(c.inner, page, old, new);
        }
        if new > c.max_key && new != c.swap_key {
            c.max_key = new;
        }
    }
}

unsafe extern "C" fn x_truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in x_fetch.
    unsafe {
        let c = cache(p);
        // No page at or above `limit` was cached since the last truncation: nothing to drop.
        // (A page under the swap number holds it only inside one b-tree balance.)
        if limit > c.max_key {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        FORWARDED.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = inner().xTruncate {
            f(c.inner, limit);
        }
        c.max_key = limit.saturating_sub(1);
    }
}

unsafe extern "C" fn x_destroy(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: p came from Box::into_raw in x_create and SQLite destroys it once.
    unsafe {
        let c = Box::from_raw(p.cast::<Cache>());
        if let Some(f) = inner().xDestroy {
            f(c.inner)
        }
    }
}

unsafe extern "C" fn x_shrink(p: *mut ffi::sqlite3_pcache) {
    // SAFETY: as in x_cachesize.
    unsafe {
        if let Some(f) = inner().xShrink {
            f(cache(p).inner)
        }
    }
}
