//! # protocell-ffi
//!
//! The C ABI of protocell (`libprotocell.so` / `libprotocell.a`, header
//! `ffi/include/protocell.h`, generated from this file by cbindgen). The conventions are
//! written at the top of the header (`ffi/cbindgen.toml`); in short: opaque handles with
//! create/destroy pairs, a [`ProtocellStatus`] from every function, a thread-local message
//! behind [`protocell_last_error`], explicit lengths for every buffer, and no panic across
//! the boundary.
//!
//! Handles are keys into a registry of live objects, never dereferenced raw: a destroyed,
//! forged or wrong-kind handle is an error, not undefined behaviour. Each handle is
//! confined to the thread that created it (a GPU context is per thread on the CUDA
//! backend, and confinement makes every call on a handle sequential).
#![allow(clippy::missing_safety_doc)]
use protocell_core::error::Error;
use protocell_runtime::embed::{self, ColonyHandle, Model, ModelSpec, Optimizer, OptimizerConfig};
use protocell_runtime::infer::Sampling;
use protocell_runtime::{io, Device};
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

/// Status of every call. `PROTOCELL_STATUS_OK` is 0; on any other value
/// [`protocell_last_error`] says what went wrong and every output is left untouched
/// (except the `needed` length of a `PROTOCELL_STATUS_BUFFER_TOO_SMALL`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocellStatus {
    /// Success.
    Ok = 0,
    /// A required pointer argument was NULL (or a handle was already destroyed and nulled).
    NullPointer = 1,
    /// An argument outside its domain: a length that does not fit, a token id outside the
    /// vocabulary, a value out of range.
    InvalidArgument = 2,
    /// The handle is not a live protocell object of the expected kind.
    InvalidHandle = 3,
    /// The handle belongs to another thread.
    WrongThread = 4,
    /// A configuration (JSON) that cannot be parsed or holds out-of-range values.
    Config = 5,
    /// Text that is not valid UTF-8.
    Utf8 = 6,
    /// Tensor shapes that do not fit.
    Shape = 7,
    /// NaN or infinity where a finite value is required (e.g. a diverged training step).
    NonFinite = 8,
    /// A checkpoint that cannot be decoded or does not fit.
    Checkpoint = 9,
    /// A file that cannot be read or written.
    Io = 10,
    /// The requested device or backend is not available.
    Unavailable = 11,
    /// A failure inside a backend.
    Backend = 12,
    /// The output buffer is too small; the `needed` argument holds the required length.
    BufferTooSmall = 13,
    /// An internal error was caught at the boundary; the handle involved may be unusable.
    Internal = 14,
}

/// Sizes of a model.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocellModelInfo {
    /// Vocabulary size: token ids are `0..vocab_size`; logits rows have this length.
    pub vocab_size: usize,
    /// Longest sequence one forward pass or training step accepts.
    pub context_len: usize,
    /// Trainable scalars.
    pub num_params: usize,
}

/// What one training step did.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProtocellStepStats {
    /// Updates this optimiser has applied, this one included.
    pub step: u64,
    /// Mean cross-entropy of the batch before the update (nats per token).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient L2 norm before clipping.
    pub grad_norm: f64,
    /// Tokens in the batch.
    pub tokens: u64,
    /// Wall time of the step in seconds.
    pub seconds: f64,
}

/// A compute device (opaque).
pub struct ProtocellDevice {
    _private: [u8; 0],
}
/// A model (opaque).
pub struct ProtocellModel {
    _private: [u8; 0],
}
/// An AdamW optimiser (opaque).
pub struct ProtocellOptimizer {
    _private: [u8; 0],
}
/// A cell colony (opaque).
pub struct ProtocellColony {
    _private: [u8; 0],
}
/// A bank of presynaptic terminals (opaque).
pub struct ProtocellPresyn {
    _private: [u8; 0],
}

// ---------------------------------------------------------------------------------------
// errors

struct Failure {
    status: ProtocellStatus,
    msg: String,
}

fn fail(status: ProtocellStatus, msg: impl Into<String>) -> Failure {
    Failure { status, msg: msg.into() }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Shape { .. } => ProtocellStatus::Shape,
            Error::InvalidArgument(_) => ProtocellStatus::InvalidArgument,
            Error::Config(_) => ProtocellStatus::Config,
            Error::NonFinite(_) => ProtocellStatus::NonFinite,
            Error::Checkpoint(_) => ProtocellStatus::Checkpoint,
            Error::Data(_) => ProtocellStatus::InvalidArgument,
            Error::Backend(_) => ProtocellStatus::Backend,
            Error::Unavailable(_) => ProtocellStatus::Unavailable,
            Error::Io(_) => ProtocellStatus::Io,
        };
        fail(status, e.to_string())
    }
}

type R<T = ()> = Result<T, Failure>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    // interior NULs cannot occur in a C string: replace them
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Runs an exported body: a returned failure or a caught panic becomes a status and the
/// thread's last error; success clears the last error.
fn guard(f: impl FnOnce() -> R) -> ProtocellStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_error("");
            ProtocellStatus::Ok
        }
        Ok(Err(e)) => {
            set_last_error(&e.msg);
            e.status
        }
        Err(p) => {
            set_last_error(&format!("internal error: {}", panic_message(p.as_ref())));
            ProtocellStatus::Internal
        }
    }
}

// ---------------------------------------------------------------------------------------
// argument checks

fn nonnull<T>(p: *const T, what: &str) -> R {
    if p.is_null() {
        return Err(fail(ProtocellStatus::NullPointer, format!("{what} is NULL")));
    }
    Ok(())
}

/// Largest element count a buffer argument may claim.
fn check_len<T>(len: usize, what: &str) -> R {
    let max = isize::MAX as usize / std::mem::size_of::<T>().max(1);
    if len > max {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("{what} length {len} is impossibly large")));
    }
    Ok(())
}

/// The caller's buffer `(p, len)` as a slice. NULL is an error even when `len` is 0.
unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> R<&'a [T]> {
    nonnull(p, what)?;
    check_len::<T>(len, what)?;
    if len == 0 {
        return Ok(&[]);
    }
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("{what} is misaligned")));
    }
    // SAFETY: non-null, aligned, and the caller promises `len` readable elements.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, what: &str) -> R<&'a mut [T]> {
    nonnull(p, what)?;
    check_len::<T>(len, what)?;
    if len == 0 {
        return Ok(&mut []);
    }
    if (p as usize) % std::mem::align_of::<T>() != 0 {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("{what} is misaligned")));
    }
    // SAFETY: non-null, aligned, and the caller promises `len` writable elements.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

unsafe fn text<'a>(p: *const c_char, len: usize, what: &str) -> R<&'a str> {
    let bytes = unsafe { slice(p.cast::<u8>(), len, what)? };
    std::str::from_utf8(bytes).map_err(|e| {
        fail(ProtocellStatus::Utf8, format!("{what} is not valid UTF-8 (first bad byte at offset {})", e.valid_up_to()))
    })
}

unsafe fn write_out<T>(out: *mut T, v: T, what: &str) -> R {
    nonnull(out, what)?;
    // SAFETY: non-null; the caller promises a writable T.
    unsafe { out.write(v) };
    Ok(())
}

fn exact_len(got: usize, want: usize, what: &str) -> R {
    if got != want {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("{what} has length {got}; expected {want}")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// handle registry

enum Object {
    Device(Device),
    Model(Box<dyn Model>),
    Optimizer(Optimizer),
    Colony(Box<dyn ColonyHandle>),
    Presyn(Box<protocell_core::synapse::Bank>),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Device(_) => "device",
            Object::Model(_) => "model",
            Object::Optimizer(_) => "optimizer",
            Object::Colony(_) => "colony",
            Object::Presyn(_) => "presynaptic bank",
        }
    }
}

struct Slot {
    owner: u64,
    obj: Mutex<Object>,
}

static HANDLES: LazyLock<Mutex<HashMap<usize, Arc<Slot>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn handles() -> MutexGuard<'static, HashMap<usize, Arc<Slot>>> {
    // the map is only inserted into and removed from: a poisoned lock still holds a valid map
    HANDLES.lock().unwrap_or_else(|p| p.into_inner())
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's number (a plain counter: unlike `std::thread::current()` it allocates
    /// nothing, so a short-lived embedding thread leaves nothing behind).
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

fn this_thread() -> u64 {
    THREAD.with(|t| *t)
}

fn register<T>(obj: Object) -> *mut T {
    let slot = Arc::new(Slot { owner: this_thread(), obj: Mutex::new(obj) });
    let key = Arc::as_ptr(&slot) as usize;
    handles().insert(key, slot);
    key as *mut T
}

fn lookup<T>(h: *const T, kind: &str) -> R<Arc<Slot>> {
    if h.is_null() {
        return Err(fail(ProtocellStatus::NullPointer, format!("{kind} handle is NULL")));
    }
    let slot = handles().get(&(h as usize)).cloned().ok_or_else(|| {
        fail(
            ProtocellStatus::InvalidHandle,
            format!("{h:p} is not a live protocell {kind} (destroyed or never created)"),
        )
    })?;
    if slot.owner != this_thread() {
        return Err(fail(
            ProtocellStatus::WrongThread,
            format!(
                "this {kind} handle belongs to another thread; handles are confined to the thread that created them"
            ),
        ));
    }
    Ok(slot)
}

fn lock<'a>(slot: &'a Slot, kind: &str) -> R<MutexGuard<'a, Object>> {
    slot.obj.lock().map_err(|_| {
        fail(
            ProtocellStatus::Internal,
            format!("this {kind} was left inconsistent by an earlier internal error; destroy it"),
        )
    })
}

/// Runs `f` on the object behind handle `h`, which must be of kind `kind`.
fn with<T, O>(h: *const T, kind: &str, f: impl FnOnce(&mut Object) -> R<O>) -> R<O> {
    let slot = lookup(h, kind)?;
    let mut obj = lock(&slot, kind)?;
    if obj.kind() != kind {
        return Err(fail(ProtocellStatus::InvalidHandle, format!("handle is a {}, expected a {kind}", obj.kind())));
    }
    f(&mut obj)
}

fn with_model<O>(h: *const ProtocellModel, f: impl FnOnce(&mut dyn Model) -> R<O>) -> R<O> {
    with(h, "model", |o| match o {
        Object::Model(m) => f(m.as_mut()),
        _ => unreachable!("kind checked"),
    })
}

fn with_colony<O>(h: *const ProtocellColony, f: impl FnOnce(&mut dyn ColonyHandle) -> R<O>) -> R<O> {
    with(h, "colony", |o| match o {
        Object::Colony(c) => f(c.as_mut()),
        _ => unreachable!("kind checked"),
    })
}

fn with_presyn<O>(h: *const ProtocellPresyn, f: impl FnOnce(&mut protocell_core::synapse::Bank) -> R<O>) -> R<O> {
    with(h, "presynaptic bank", |o| match o {
        Object::Presyn(b) => f(b.as_mut()),
        _ => unreachable!("kind checked"),
    })
}

fn device_of(h: *const ProtocellDevice) -> R<Device> {
    with(h, "device", |o| match o {
        Object::Device(d) => Ok(*d),
        _ => unreachable!("kind checked"),
    })
}

/// Removes the handle `*hp` of kind `kind` and nulls `*hp`.
unsafe fn destroy<T>(hp: *mut *mut T, kind: &str) -> R {
    nonnull(hp, &format!("pointer to the {kind} handle"))?;
    // SAFETY: non-null; the caller promises a readable and writable handle variable.
    let h = unsafe { hp.read() };
    if h.is_null() {
        return Err(fail(ProtocellStatus::NullPointer, format!("{kind} handle is NULL (already destroyed?)")));
    }
    let slot = lookup(h.cast_const(), kind)?;
    {
        let obj = slot.obj.lock().unwrap_or_else(|p| p.into_inner());
        if obj.kind() != kind {
            return Err(fail(ProtocellStatus::InvalidHandle, format!("handle is a {}, expected a {kind}", obj.kind())));
        }
    }
    let (removed, now_empty) = {
        let mut map = handles();
        let removed = map.remove(&(h as usize));
        if map.is_empty() {
            map.shrink_to_fit();
        }
        (removed, map.is_empty())
    };
    // SAFETY: as above.
    unsafe { hp.write(std::ptr::null_mut()) };
    drop(slot);
    drop(removed);
    if now_empty {
        // nothing is alive: hand the backends' buffer caches back to the system
        protocell_runtime::release_caches();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// version and errors

/// NUL-terminated library version, e.g. `"0.1.0"`. Static: never free it.
#[no_mangle]
pub extern "C" fn protocell_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Message of the last failed call on this thread (NUL-terminated UTF-8; empty after a
/// successful call). Owned by the library and valid until the next protocell call on this
/// thread: copy it if you need it longer. Never NULL.
#[no_mangle]
pub extern "C" fn protocell_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

// ---------------------------------------------------------------------------------------
// devices

/// Opens a device: `"cpu"`, `"wgpu"`, `"wgpu:N"`, `"cuda"` or `"cuda:N"` (`name_len` bytes,
/// no NUL needed). A device this build or machine cannot run is `PROTOCELL_STATUS_UNAVAILABLE`.
/// On success `*out` receives a handle to release with [`protocell_device_destroy`].
#[no_mangle]
pub unsafe extern "C" fn protocell_device_create(
    name: *const c_char,
    name_len: usize,
    out: *mut *mut ProtocellDevice,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let name = unsafe { text(name, name_len, "device name")? };
        let device: Device = name.trim().parse()?;
        embed::check_device(device)?;
        unsafe { write_out(out, register(Object::Device(device)), "out") }
    })
}

/// Releases a device and sets `*device` to NULL. Models made on it stay usable.
#[no_mangle]
pub unsafe extern "C" fn protocell_device_destroy(device: *mut *mut ProtocellDevice) -> ProtocellStatus {
    guard(|| unsafe { destroy(device, "device") })
}

// ---------------------------------------------------------------------------------------
// models

/// Creates a freshly initialised model from a JSON spec (`json_len` bytes), e.g.
/// `{"arch": "gpt", "preset": "tiny", "model": {"n_layer": 2}, "seed": 7}`; `"chars": "..."`
/// selects a character vocabulary instead of UTF-8 bytes. Release with
/// [`protocell_model_destroy`].
#[no_mangle]
pub unsafe extern "C" fn protocell_model_create(
    device: *const ProtocellDevice,
    json: *const c_char,
    json_len: usize,
    out: *mut *mut ProtocellModel,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let dev = device_of(device)?;
        let spec = ModelSpec::from_json(unsafe { text(json, json_len, "json")? })?;
        let model = embed::create(&spec, dev)?;
        unsafe { write_out(out, register(Object::Model(model)), "out") }
    })
}

/// Loads a model from a checkpoint file (`path_len` bytes of UTF-8 path, no NUL needed),
/// written by [`protocell_model_save`] or by `protocell train`.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_load(
    device: *const ProtocellDevice,
    path: *const c_char,
    path_len: usize,
    out: *mut *mut ProtocellModel,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let dev = device_of(device)?;
        let path = unsafe { text(path, path_len, "path")? };
        let ckpt = io::read_checkpoint(Path::new(path))?;
        let model = embed::load(&ckpt, dev)?;
        unsafe { write_out(out, register(Object::Model(model)), "out") }
    })
}

/// Loads a model from checkpoint bytes held in memory (`len` bytes; the library copies
/// what it needs and keeps no reference to `bytes`).
#[no_mangle]
pub unsafe extern "C" fn protocell_model_load_bytes(
    device: *const ProtocellDevice,
    bytes: *const u8,
    len: usize,
    out: *mut *mut ProtocellModel,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let dev = device_of(device)?;
        let ckpt = embed::decode_checkpoint(unsafe { slice(bytes, len, "bytes")? })?;
        let model = embed::load(&ckpt, dev)?;
        unsafe { write_out(out, register(Object::Model(model)), "out") }
    })
}

fn checkpoint_bytes(model: *const ProtocellModel, opt: *const ProtocellOptimizer) -> R<Vec<u8>> {
    let ckpt = if opt.is_null() {
        with_model(model, |m| Ok(m.checkpoint(None)?))?
    } else {
        let oslot = lookup(opt, "optimizer")?;
        let oguard = lock(&oslot, "optimizer")?;
        let o = match &*oguard {
            Object::Optimizer(o) => o,
            other => {
                return Err(fail(
                    ProtocellStatus::InvalidHandle,
                    format!("handle is a {}, expected an optimizer", other.kind()),
                ))
            }
        };
        with_model(model, |m| Ok(m.checkpoint(Some(o))?))?
    };
    Ok(ckpt.encode()?)
}

/// Saves the model to a checkpoint file, atomically (a temporary file renamed over
/// `path`). With a non-NULL `optimizer` that has trained this model, its moments are saved
/// too. `optimizer` may be NULL.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_save(
    model: *const ProtocellModel,
    optimizer: *const ProtocellOptimizer,
    path: *const c_char,
    path_len: usize,
) -> ProtocellStatus {
    guard(|| {
        let path = unsafe { text(path, path_len, "path")? };
        let bytes = checkpoint_bytes(model, optimizer)?;
        Ok(io::write_atomic(Path::new(path), &bytes)?)
    })
}

/// Writes the checkpoint bytes into `out` (`cap` bytes). `*needed` always receives the
/// checkpoint's size; when `cap` is smaller the call returns `PROTOCELL_STATUS_BUFFER_TOO_SMALL`
/// and writes nothing (`out` may then be NULL: call once to size, again to fill).
#[no_mangle]
pub unsafe extern "C" fn protocell_model_save_bytes(
    model: *const ProtocellModel,
    optimizer: *const ProtocellOptimizer,
    out: *mut u8,
    cap: usize,
    needed: *mut usize,
) -> ProtocellStatus {
    guard(|| {
        nonnull(needed, "needed")?;
        let bytes = checkpoint_bytes(model, optimizer)?;
        unsafe { write_out(needed, bytes.len(), "needed")? };
        if cap < bytes.len() {
            return Err(fail(
                ProtocellStatus::BufferTooSmall,
                format!("the checkpoint needs {} bytes; the buffer holds {cap}", bytes.len()),
            ));
        }
        unsafe { slice_mut(out, bytes.len(), "out")? }.copy_from_slice(&bytes);
        Ok(())
    })
}

/// Sizes of the model.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_info(
    model: *const ProtocellModel,
    info: *mut ProtocellModelInfo,
) -> ProtocellStatus {
    guard(|| {
        nonnull(info, "info")?;
        let i = with_model(model, |m| {
            Ok(ProtocellModelInfo {
                vocab_size: m.vocab_size(),
                context_len: m.context_len(),
                num_params: m.num_params(),
            })
        })?;
        unsafe { write_out(info, i, "info") }
    })
}

/// Logits for token ids `[batch, seq]` (row-major, `batch·seq` ids): writes
/// `batch·seq·vocab_size` floats to `logits`, whose length `logits_len` must be exactly that.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_forward(
    model: *const ProtocellModel,
    ids: *const u32,
    batch: usize,
    seq: usize,
    logits: *mut f32,
    logits_len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_model(model, |m| {
            let n = tokens_of(batch, seq, m.context_len())?;
            let want = n
                .checked_mul(m.vocab_size())
                .ok_or_else(|| fail(ProtocellStatus::InvalidArgument, "too many logits"))?;
            exact_len(logits_len, want, "logits")?;
            let ids = unsafe { slice(ids, n, "ids")? };
            let out = unsafe { slice_mut(logits, logits_len, "logits")? };
            out.copy_from_slice(&m.logits(ids, batch, seq)?);
            Ok(())
        })
    })
}

/// `batch·seq` after checking both against the context.
fn tokens_of(batch: usize, seq: usize, context: usize) -> R<usize> {
    if batch == 0 || seq == 0 {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("batch {batch} and seq {seq} must be positive")));
    }
    if seq > context {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("seq {seq} exceeds the model context {context}")));
    }
    const MAX_BATCH: usize = 1 << 20;
    if batch > MAX_BATCH {
        return Err(fail(ProtocellStatus::InvalidArgument, format!("batch {batch} exceeds {MAX_BATCH}")));
    }
    Ok(batch * seq)
}

/// Samples `n_new` tokens after `prompt` (`prompt_len` ≥ 1 ids) into `out` (`n_new` ids).
/// `temperature` 0 is greedy; `top_k` 0 keeps every token; the same `seed` gives the same
/// tokens.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_generate(
    model: *const ProtocellModel,
    prompt: *const u32,
    prompt_len: usize,
    temperature: f32,
    top_k: usize,
    seed: u64,
    out: *mut u32,
    n_new: usize,
) -> ProtocellStatus {
    guard(|| {
        with_model(model, |m| {
            const MAX_NEW: usize = 1 << 20;
            if n_new > MAX_NEW {
                return Err(fail(ProtocellStatus::InvalidArgument, format!("n_new {n_new} exceeds {MAX_NEW}")));
            }
            let prompt = unsafe { slice(prompt, prompt_len, "prompt")? };
            let dst = unsafe { slice_mut(out, n_new, "out")? };
            let s = Sampling { temperature, top_k, seed };
            let ids = m.generate(prompt, n_new, &s)?;
            dst.copy_from_slice(&ids);
            Ok(())
        })
    })
}

/// Token ids of UTF-8 `text` (`text_len` bytes) under the model's tokenizer, into `out`
/// (`cap` ids). `*n_ids` always receives the count; a short buffer is
/// `PROTOCELL_STATUS_BUFFER_TOO_SMALL` and nothing is written (`out` may then be NULL).
#[no_mangle]
pub unsafe extern "C" fn protocell_model_encode(
    model: *const ProtocellModel,
    text_ptr: *const c_char,
    text_len: usize,
    out: *mut u32,
    cap: usize,
    n_ids: *mut usize,
) -> ProtocellStatus {
    guard(|| {
        nonnull(n_ids, "n_ids")?;
        let t = unsafe { text(text_ptr, text_len, "text")? };
        let ids = with_model(model, |m| Ok(m.tokenizer().encode(t)?))?;
        unsafe { write_out(n_ids, ids.len(), "n_ids")? };
        if cap < ids.len() {
            return Err(fail(ProtocellStatus::BufferTooSmall, format!("{} ids do not fit in {cap}", ids.len())));
        }
        unsafe { slice_mut(out, ids.len(), "out")? }.copy_from_slice(&ids);
        Ok(())
    })
}

/// UTF-8 text of `n` ids, NUL-terminated, into `out` (`cap` bytes). `*needed` always
/// receives the size including the NUL; a short buffer is `PROTOCELL_STATUS_BUFFER_TOO_SMALL`.
/// Byte sequences that are not UTF-8 become U+FFFD.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_decode(
    model: *const ProtocellModel,
    ids: *const u32,
    n: usize,
    out: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> ProtocellStatus {
    guard(|| {
        nonnull(needed, "needed")?;
        let ids = unsafe { slice(ids, n, "ids")? };
        let s = with_model(model, |m| {
            if let Some(i) = ids.iter().position(|&t| t as usize >= m.vocab_size()) {
                return Err(fail(
                    ProtocellStatus::InvalidArgument,
                    format!("ids[{i}] = {} is outside the vocabulary of {}", ids[i], m.vocab_size()),
                ));
            }
            Ok(m.tokenizer().decode(ids)?)
        })?;
        let total = s.len() + 1;
        unsafe { write_out(needed, total, "needed")? };
        if cap < total {
            return Err(fail(
                ProtocellStatus::BufferTooSmall,
                format!("the text needs {total} bytes; the buffer holds {cap}"),
            ));
        }
        let dst = unsafe { slice_mut(out.cast::<u8>(), total, "out")? };
        dst[..s.len()].copy_from_slice(s.as_bytes());
        dst[s.len()] = 0;
        Ok(())
    })
}

/// Releases a model and sets `*model` to NULL.
#[no_mangle]
pub unsafe extern "C" fn protocell_model_destroy(model: *mut *mut ProtocellModel) -> ProtocellStatus {
    guard(|| unsafe { destroy(model, "model") })
}

// ---------------------------------------------------------------------------------------
// training

/// Creates an AdamW optimiser from JSON settings (`json_len` bytes; `{}` for the defaults:
/// `lr` 1e-3 constant, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on matrices (`"decay":
/// "all"` decays every parameter), gradient clipping at 1; `warmup`, `total_steps` and
/// `min_lr` give a cosine schedule). It binds to the first model it trains. Release with
/// [`protocell_optimizer_destroy`].
#[no_mangle]
pub unsafe extern "C" fn protocell_optimizer_create(
    json: *const c_char,
    json_len: usize,
    out: *mut *mut ProtocellOptimizer,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let cfg = OptimizerConfig::from_json(unsafe { text(json, json_len, "json")? })?;
        let opt = Optimizer::new(cfg)?;
        unsafe { write_out(out, register(Object::Optimizer(opt)), "out") }
    })
}

/// The optimiser saved with `model` by [`protocell_model_save`] or by `protocell train`
/// (settings, step counts and moments), read from a checkpoint file (`path_len` bytes of
/// UTF-8 path) and bound to `model`, so that training resumes where it stopped. A checkpoint
/// saved without an optimiser is `PROTOCELL_STATUS_CHECKPOINT`.
#[no_mangle]
pub unsafe extern "C" fn protocell_optimizer_load(
    model: *const ProtocellModel,
    path: *const c_char,
    path_len: usize,
    out: *mut *mut ProtocellOptimizer,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let path = unsafe { text(path, path_len, "path")? };
        let ckpt = io::read_checkpoint(Path::new(path))?;
        let opt = with_model(model, |m| Ok(m.restore_optimizer(&ckpt)?))?;
        unsafe { write_out(out, register(Object::Optimizer(opt)), "out") }
    })
}

/// As [`protocell_optimizer_load`], from checkpoint bytes held in memory (`len` bytes).
#[no_mangle]
pub unsafe extern "C" fn protocell_optimizer_load_bytes(
    model: *const ProtocellModel,
    bytes: *const u8,
    len: usize,
    out: *mut *mut ProtocellOptimizer,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let ckpt = embed::decode_checkpoint(unsafe { slice(bytes, len, "bytes")? })?;
        let opt = with_model(model, |m| Ok(m.restore_optimizer(&ckpt)?))?;
        unsafe { write_out(out, register(Object::Optimizer(opt)), "out") }
    })
}

/// Releases an optimiser and sets `*optimizer` to NULL.
#[no_mangle]
pub unsafe extern "C" fn protocell_optimizer_destroy(optimizer: *mut *mut ProtocellOptimizer) -> ProtocellStatus {
    guard(|| unsafe { destroy(optimizer, "optimizer") })
}

/// One training step: next-token cross-entropy of `inputs` against `targets` (both
/// `[batch, seq]`, `batch·seq` ids), backward, AdamW update. `stats` may be NULL. A failed
/// step (bad ids, non-finite loss or gradient) leaves model and optimiser unchanged.
#[no_mangle]
pub unsafe extern "C" fn protocell_train_step(
    model: *const ProtocellModel,
    optimizer: *const ProtocellOptimizer,
    inputs: *const u32,
    targets: *const u32,
    batch: usize,
    seq: usize,
    stats: *mut ProtocellStepStats,
) -> ProtocellStatus {
    guard(|| {
        let oslot = lookup(optimizer, "optimizer")?;
        let mut oguard = lock(&oslot, "optimizer")?;
        let opt = match &mut *oguard {
            Object::Optimizer(o) => o,
            other => {
                return Err(fail(
                    ProtocellStatus::InvalidHandle,
                    format!("handle is a {}, expected an optimizer", other.kind()),
                ))
            }
        };
        let st = with_model(model, |m| {
            let n = tokens_of(batch, seq, m.context_len())?;
            let x = unsafe { slice(inputs, n, "inputs")? };
            let y = unsafe { slice(targets, n, "targets")? };
            Ok(m.train_step(opt, x, y, batch, seq)?)
        })?;
        if !stats.is_null() {
            let s = ProtocellStepStats {
                step: st.step,
                loss: st.loss,
                lr: st.lr,
                grad_norm: st.grad_norm,
                tokens: st.tokens,
                seconds: st.seconds,
            };
            unsafe { write_out(stats, s, "stats")? };
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// cell colonies

/// Creates a cell colony from JSON settings (`json_len` bytes), e.g.
/// `{"blocks": 6, "mode": "sound", "inner_steps": 5, "dt": 1.0, "init": 0.5,
/// "coeffs": [0.3, 0.5, 0.4, 0.4, 0.3, 0.2, 0.3, 0.05, 0.02]}`; only `blocks` is required.
/// `mode` is `"as-coded"`, `"as-described"` or `"sound"`. Release with
/// [`protocell_colony_destroy`].
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_create(
    device: *const ProtocellDevice,
    json: *const c_char,
    json_len: usize,
    out: *mut *mut ProtocellColony,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let dev = device_of(device)?;
        let cfg = embed::colony_config(unsafe { text(json, json_len, "json")? })?;
        let colony = embed::create_colony(cfg, dev)?;
        unsafe { write_out(out, register(Object::Colony(colony)), "out") }
    })
}

/// Number of blocks `N` of the colony.
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_blocks(
    colony: *const ProtocellColony,
    blocks: *mut usize,
) -> ProtocellStatus {
    guard(|| {
        nonnull(blocks, "blocks")?;
        let n = with_colony(colony, |c| Ok(c.blocks()))?;
        unsafe { write_out(blocks, n, "blocks") }
    })
}

/// Advances the colony by its `inner_steps` EPGL steps with the per-block drive `drive`
/// (`len` = N finite floats), held fixed across the steps.
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_step(
    colony: *const ProtocellColony,
    drive: *const f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_colony(colony, |c| {
            exact_len(len, c.blocks(), "drive")?;
            let d = unsafe { slice(drive, len, "drive")? };
            Ok(c.step(d)?)
        })
    })
}

/// Copies the state `[N, 4]` (E, P, G, L per block, row-major; `len` = 4N) into `out`.
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_get_state(
    colony: *const ProtocellColony,
    out: *mut f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_colony(colony, |c| {
            exact_len(len, 4 * c.blocks(), "state")?;
            let dst = unsafe { slice_mut(out, len, "out")? };
            dst.copy_from_slice(&c.state()?);
            Ok(())
        })
    })
}

/// Replaces the state `[N, 4]` (`len` = 4N values in [0, 1]).
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_set_state(
    colony: *const ProtocellColony,
    state: *const f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_colony(colony, |c| {
            exact_len(len, 4 * c.blocks(), "state")?;
            Ok(c.set_state(unsafe { slice(state, len, "state")? })?)
        })
    })
}

/// Copies the mucus matrix `[N, N]` (row-major; `len` = N²) into `out`.
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_get_mucus(
    colony: *const ProtocellColony,
    out: *mut f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_colony(colony, |c| {
            exact_len(len, c.blocks() * c.blocks(), "mucus")?;
            let dst = unsafe { slice_mut(out, len, "out")? };
            dst.copy_from_slice(&c.mucus()?);
            Ok(())
        })
    })
}

/// Replaces the mucus matrix `[N, N]` (`len` = N² finite, non-negative values, zero
/// diagonal).
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_set_mucus(
    colony: *const ProtocellColony,
    mucus: *const f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_colony(colony, |c| {
            exact_len(len, c.blocks() * c.blocks(), "mucus")?;
            Ok(c.set_mucus(unsafe { slice(mucus, len, "mucus")? })?)
        })
    })
}

/// Releases a colony and sets `*colony` to NULL.
#[no_mangle]
pub unsafe extern "C" fn protocell_colony_destroy(colony: *mut *mut ProtocellColony) -> ProtocellStatus {
    guard(|| unsafe { destroy(colony, "colony") })
}

// ---------------------------------------------------------------------------------------
// presynaptic banks

/// Creates a bank of `keys` presynaptic terminals (calcium, buffer, synaptotagmin sensors,
/// complexin clamp, priming, readily-releasable and reserve pools, energy) from JSON settings
/// (`json_len` bytes; `{}` for the seed's defaults, e.g. `{"attn_topk": 8, "tau_c": 6.0}`).
/// Runs on the host. Release with [`protocell_presyn_destroy`].
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_create(
    json: *const c_char,
    json_len: usize,
    keys: usize,
    out: *mut *mut ProtocellPresyn,
) -> ProtocellStatus {
    guard(|| {
        nonnull(out, "out")?;
        let cfg = embed::presyn_config(unsafe { text(json, json_len, "json")? })?;
        let bank = Box::new(protocell_core::synapse::Bank::new(cfg, keys)?);
        unsafe { write_out(out, register(Object::Presyn(bank)), "out") }
    })
}

/// Number of terminals and state floats per terminal (`width`: C, BUF, RRP, RES, PR, CL, E,
/// then the endocytosis delay line).
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_shape(
    bank: *const ProtocellPresyn,
    keys: *mut usize,
    width: *mut usize,
) -> ProtocellStatus {
    guard(|| {
        nonnull(keys, "keys")?;
        nonnull(width, "width")?;
        let (k, w) = with_presyn(bank, |b| Ok((b.keys(), b.width())))?;
        unsafe {
            write_out(keys, k, "keys")?;
            write_out(width, w, "width")
        }
    })
}

/// One query: `drive` (`len` = keys floats; a non-finite entry is not an edge) is its drive
/// to every terminal; the strongest `attn_topk` finite drives release vesicles, their outputs
/// are written to `out` (`out_len` = keys; 0 elsewhere), then every terminal takes one step.
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_step(
    bank: *const ProtocellPresyn,
    drive: *const f32,
    len: usize,
    out: *mut f32,
    out_len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_presyn(bank, |b| {
            exact_len(len, b.keys(), "drive")?;
            exact_len(out_len, b.keys(), "out")?;
            let d = unsafe { slice(drive, len, "drive")? };
            let e = b.step(d)?;
            let dst = unsafe { slice_mut(out, out_len, "out")? };
            dst.copy_from_slice(&e);
            Ok(())
        })
    })
}

/// Copies the state `[keys, width]` (terminal-major; `len` = keys·width) into `out`.
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_get_state(
    bank: *const ProtocellPresyn,
    out: *mut f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_presyn(bank, |b| {
            exact_len(len, b.keys() * b.width(), "state")?;
            let dst = unsafe { slice_mut(out, len, "out")? };
            dst.copy_from_slice(b.state());
            Ok(())
        })
    })
}

/// Replaces the state `[keys, width]` (`len` = keys·width finite values within each pool's
/// bounds; nothing changes on an error).
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_set_state(
    bank: *const ProtocellPresyn,
    state: *const f32,
    len: usize,
) -> ProtocellStatus {
    guard(|| {
        with_presyn(bank, |b| {
            exact_len(len, b.keys() * b.width(), "state")?;
            Ok(b.set_state(unsafe { slice(state, len, "state")? })?)
        })
    })
}

/// Releases a presynaptic bank and sets `*bank` to NULL.
#[no_mangle]
pub unsafe extern "C" fn protocell_presyn_destroy(bank: *mut *mut ProtocellPresyn) -> ProtocellStatus {
    guard(|| unsafe { destroy(bank, "presynaptic bank") })
}

#[cfg(test)]
mod tests;
