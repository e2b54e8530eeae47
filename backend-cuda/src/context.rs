//! Library discovery, the per-device context (stream, NVRTC-compiled module, cuBLAS handle)
//! and the caching allocator.
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use protocell_core::backend::kernel_abi::{
    AdamWParams, AttnApplyParams, AttnParams, BinaryParams, CopyParams, CrossEntropyBwdParams, FillParams, IndexParams,
    KernelParams, LayerNormParams, MatmulParams, NormBwdParams, ParamLayout, RandomParams, ReduceParams, RowParams,
    UnaryParams,
};
use protocell_core::backend::MemoryStats;
use protocell_core::cell::kernel::ColonyParams;
use protocell_core::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The CUDA C files of the kernels, in order (after the generated parameter structs).
const FILES: &[&str] = &[
    include_str!("../kernels/prelude.cuh"),
    include_str!("../kernels/elementwise.cu"),
    include_str!("../kernels/reduce.cu"),
    include_str!("../kernels/index.cu"),
    include_str!("../kernels/random.cu"),
    include_str!("../kernels/matmul.cu"),
    include_str!("../kernels/nn.cu"),
    include_str!("../kernels/attention.cu"),
    include_str!("../kernels/colony.cu"),
];

/// A kernel entry point of [`source`] and the parameter struct it takes by value after its
/// pointer arguments.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Entry point (`extern "C"`).
    pub name: &'static str,
    /// The parameter struct.
    pub params: &'static ParamLayout,
}

macro_rules! kernels {
    ($($name:literal: $params:ty,)*) => {
        /// Every kernel entry point of [`source`].
        pub const KERNELS: &[Kernel] = &[$(Kernel { name: $name, params: &<$params as KernelParams>::LAYOUT }),*];
    };
}

kernels! {
    "fill": FillParams,
    "unary": UnaryParams,
    "binary": BinaryParams,
    "copy": CopyParams,
    "reduce": ReduceParams,
    "gather": IndexParams,
    "scatter": IndexParams,
    "random": RandomParams,
    "matmul": MatmulParams,
    "softmax": RowParams,
    "cross_entropy": RowParams,
    "cross_entropy_bwd": CrossEntropyBwdParams,
    "adamw": AdamWParams,
    "layer_norm": LayerNormParams,
    "layer_norm_bwd": NormBwdParams,
    "layer_norm_params": NormBwdParams,
    "attention": AttnParams,
    "attention_bwd": AttnParams,
    "attention_apply": AttnApplyParams,
    "colony_fwd": ColonyParams,
    "colony_bwd": ColonyParams,
}

/// The CUDA C source of every kernel, compiled as one module: the C declarations of the
/// parameter structs of [`KERNELS`] (generated from their Rust definitions, each with
/// `static_assert`s of its size and field offsets), then the kernel files.
pub fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let mut s = String::from("// Kernel parameter structs, generated from their Rust definitions.\n");
        let mut seen = Vec::new();
        for k in KERNELS {
            if !seen.contains(&k.params.name) {
                seen.push(k.params.name);
                s.push_str(&k.params.cuda());
            }
        }
        s.push('\n');
        for f in FILES {
            s.push_str(f);
        }
        s
    })
}

/// Words of the buffer a launch passes the parameter struct in (the driver reads the size the
/// kernel declares from it): at least the largest struct's.
pub const PARAM_WORDS: usize = 64;

fn unavailable(why: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("CUDA unavailable: {why}"))
}

fn driver_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend(format!("CUDA {what}: {e}"))
}

/// Directories searched for `libnvrtc.so.13` and `libcublas.so.13` besides the loader's own
/// path: `PROTOCELL_CUDA_LIB_DIR` (`:`-separated), `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64`,
/// `/usr/local/cuda/lib64`.
fn search_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(v) = std::env::var("PROTOCELL_CUDA_LIB_DIR") {
        dirs.extend(std::env::split_paths(&v));
    }
    for var in ["CUDA_PATH", "CUDA_HOME"] {
        if let Ok(v) = std::env::var(var) {
            dirs.push(std::path::Path::new(&v).join("lib64"));
        }
    }
    dirs.push("/usr/local/cuda/lib64".into());
    dirs
}

/// Loads NVRTC and cuBLAS from [`search_dirs`] by absolute path (once per process), so that
/// cudarc's lookup by library name finds them without `LD_LIBRARY_PATH`.
fn preload() {
    static LOADED: OnceLock<Vec<libloading::Library>> = OnceLock::new();
    LOADED.get_or_init(|| {
        let mut libs = Vec::new();
        // NVRTC opens its builtins library by name at compile time: load it first, from the
        // same directory, so that the name resolves to it without LD_LIBRARY_PATH
        for name in ["libnvrtc-builtins.so.13.", "libnvrtc.so.13", "libcublas.so.13"] {
            for dir in search_dirs() {
                let path = match name.strip_suffix('.') {
                    // any 13.x builtins of that directory
                    Some(prefix) => std::fs::read_dir(&dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|e| e.path())
                        .find(|p| {
                            p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                                f.starts_with(prefix) && f[prefix.len()..].starts_with('.') && !f.contains("alt")
                            })
                        })
                        .unwrap_or_else(|| dir.join(name)),
                    None => dir.join(name),
                };
                if path.exists() {
                    // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's
                    // own runtime libraries, the ones cudarc would load by name.
                    if let Ok(lib) = unsafe { libloading::Library::new(&path) } {
                        libs.push(lib);
                        break;
                    }
                }
            }
        }
        libs
    });
}

/// Whether NVRTC can be loaded (after searching the usual directories).
pub fn nvrtc_present() -> bool {
    preload();
    // SAFETY: only tries to dlopen the library by name.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether the CUDA driver library can be loaded and reports at least one device. Never
/// panics: the driver library is probed before any driver call.
pub fn driver_present() -> Result<usize> {
    // SAFETY: only tries to dlopen the library by name.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(unavailable("the CUDA driver library (libcuda.so) was not found"));
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => Ok(n as usize),
        Ok(_) => Err(unavailable("the driver reports no CUDA device")),
        Err(e) => Err(unavailable(format!("the driver failed to initialise: {e}"))),
    }
}

/// Compiles [`source`] to PTX with NVRTC for `arch` (e.g. `compute_90`; `None`: NVRTC's
/// default). Needs NVRTC, not a GPU.
pub fn compile(arch: Option<&str>) -> Result<cudarc::nvrtc::Ptx> {
    if !nvrtc_present() {
        return Err(unavailable(
            "NVRTC (libnvrtc.so.13) was not found; set PROTOCELL_CUDA_LIB_DIR or LD_LIBRARY_PATH to its directory",
        ));
    }
    let mut options = vec!["--std=c++17".to_string()];
    if let Some(a) = arch {
        options.push(format!("--gpu-architecture={a}"));
    }
    let opts = cudarc::nvrtc::CompileOptions { options, ..Default::default() };
    cudarc::nvrtc::compile_ptx_with_opts(source(), opts).map_err(|e| Error::Backend(format!("NVRTC: {e}")))
}

/// Compiles [`source`] with NVRTC to a cubin for the real architecture `arch` (e.g. `sm_90`).
/// Needs NVRTC, not a GPU.
pub fn compile_cubin(arch: &str) -> Result<Vec<u8>> {
    use cudarc::nvrtc::{result, sys};
    if !nvrtc_present() {
        return Err(unavailable("NVRTC (libnvrtc.so.13) was not found"));
    }
    let nv = |what: &str, e: cudarc::nvrtc::result::NvrtcError| Error::Backend(format!("NVRTC {what}: {e:?}"));
    let src = std::ffi::CString::new(source()).map_err(|_| Error::Backend("kernel source has a NUL byte".into()))?;
    let prog = result::create_program(&src, None).map_err(|e| nv("create", e))?;
    let opts = vec!["--std=c++17".to_string(), format!("--gpu-architecture={arch}")];
    // SAFETY: `prog` is a live program of this source; it is destroyed on every path below.
    let out = unsafe {
        match result::compile_program(prog, &opts) {
            Err(e) => {
                let log = result::get_program_log(prog)
                    .map(|l| std::ffi::CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
                    .unwrap_or_default();
                Err(Error::Backend(format!("NVRTC ({arch}): {e:?}\n{log}")))
            }
            Ok(()) => {
                let mut size = 0usize;
                sys::nvrtcGetCUBINSize(prog, &mut size).result().map_err(|e| nv("cubin size", e)).and_then(|_| {
                    let mut buf = vec![0u8; size];
                    sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut std::ffi::c_char)
                        .result()
                        .map(|_| buf)
                        .map_err(|e| nv("cubin", e))
                })
            }
        }
    };
    // SAFETY: the program is not used after this.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

fn driver_version() -> String {
    let mut v = 0i32;
    // SAFETY: the driver library is loaded (checked before any context exists).
    match unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }.result() {
        Ok(()) => format!("{}.{}", v / 1000, (v % 1000) / 10),
        Err(_) => "unknown".into(),
    }
}

fn nvrtc_version() -> String {
    let (mut a, mut b) = (0i32, 0i32);
    // SAFETY: NVRTC is loaded (checked by the compile that precedes this).
    match unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) }.result() {
        Ok(()) => format!("{a}.{b}"),
        Err(_) => "unknown".into(),
    }
}

/// A pooled device allocation (returned to its size class on drop).
pub(crate) struct PoolBuf {
    slice: Option<CudaSlice<u8>>,
    bytes: usize,
    ptr: u64,
    ctx: Arc<Context>,
}

impl PoolBuf {
    /// Device address of the first byte.
    pub(crate) fn ptr(&self) -> u64 {
        self.ptr
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        if let Some(s) = self.slice.take() {
            self.ctx.release(s, self.bytes);
        }
    }
}

/// Size class of an allocation: powers of two up to 1 MiB, then multiples of 1 MiB.
fn size_class(bytes: usize) -> usize {
    let b = bytes.max(256);
    if b <= 1 << 20 {
        b.next_power_of_two()
    } else {
        b.div_ceil(1 << 20) << 20
    }
}

/// One CUDA device: context, the stream every op runs on, the kernels, cuBLAS and the pool.
pub struct Context {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    funcs: HashMap<&'static str, (CudaFunction, &'static ParamLayout)>,
    pub(crate) blas: Option<Mutex<cudarc::cublas::CudaBlas>>,
    pool: Mutex<HashMap<usize, Vec<CudaSlice<u8>>>>,
    live_buffers: AtomicUsize,
    live_bytes: AtomicUsize,
    peak_bytes: AtomicUsize,
    /// Device name and compute capability.
    pub info: String,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cuda::Context({})", self.info)
    }
}

impl Context {
    /// Opens device `ordinal`: checks the libraries first (no CUDA ⇒ `Err`, never a panic),
    /// compiles the kernels for its compute capability and creates a cuBLAS handle when
    /// cuBLAS is installed.
    pub fn new(ordinal: usize) -> Result<Arc<Self>> {
        // the driver first: without it nothing else is loaded (NVRTC and cuBLAS are large
        // libraries whose loading is wasted work, and noise under memory checkers)
        let count = driver_present()?;
        preload();
        if ordinal >= count {
            return Err(unavailable(format!("device {ordinal} requested, {count} present")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(format!("opening device {ordinal}: {e}")))?;
        // one stream, so the per-allocation events cudarc records for multi-stream use are not needed
        // SAFETY: every op of this backend runs on the single default stream of this context.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx.compute_capability().map_err(|e| driver_err("compute capability", e))?;
        let name = ctx.name().unwrap_or_else(|_| "unknown".into());
        // a cubin for this exact architecture: the driver runs it whatever its own version
        // (PTX from an NVRTC newer than the driver would be refused); PTX when NVRTC cannot
        // build a cubin for this architecture (a device newer than NVRTC)
        let image = match compile_cubin(&format!("sm_{major}{minor}")) {
            Ok(cubin) => cudarc::nvrtc::Ptx::from_binary(cubin),
            Err(_) => compile(Some(&format!("compute_{major}{minor}")))?,
        };
        let module = ctx.load_module(image).map_err(|e| {
            driver_err(&format!("loading the kernels (driver {}, NVRTC {})", driver_version(), nvrtc_version()), e)
        })?;
        let mut funcs = HashMap::new();
        for k in KERNELS {
            let f = module.load_function(k.name).map_err(|e| driver_err(&format!("kernel {}", k.name), e))?;
            funcs.insert(k.name, (f, k.params));
        }
        // SAFETY: only tries to dlopen the library by name.
        // (a cuBLAS that fails to start leaves the tiled kernel in charge, as a missing one does)
        let blas = if unsafe { cudarc::cublas::sys::is_culib_present() } {
            cudarc::cublas::CudaBlas::new(stream.clone()).ok().map(Mutex::new)
        } else {
            None
        };
        let info = format!(
            "{name} (sm_{major}{minor}, {})",
            if blas.is_some() { "cuBLAS" } else { "no cuBLAS: tiled matmul kernel" }
        );
        Ok(Arc::new(Self {
            ctx,
            stream,
            _module: module,
            funcs,
            blas,
            pool: Mutex::new(HashMap::new()),
            live_buffers: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            info,
        }))
    }

    /// A buffer of at least `bytes` bytes from the pool (allocating only on a miss).
    pub(crate) fn alloc(self: &Arc<Self>, bytes: usize) -> Result<Arc<PoolBuf>> {
        let class = size_class(bytes);
        let hit = self.pool.lock().ok().and_then(|mut p| p.get_mut(&class).and_then(|v| v.pop()));
        let slice = match hit {
            Some(s) => s,
            None => {
                // SAFETY: the memory is uninitialised; every op writes its whole output before reading it.
                match unsafe { self.stream.alloc::<u8>(class) } {
                    Ok(s) => s,
                    Err(_) => {
                        // out of memory: return the cached blocks to the driver and retry once
                        self.trim();
                        unsafe { self.stream.alloc::<u8>(class) }
                            .map_err(|e| driver_err(&format!("allocating {class} bytes"), e))?
                    }
                }
            }
        };
        let ptr = {
            let (ptr, _sync) = slice.device_ptr(&self.stream);
            ptr
        };
        let n = self.live_bytes.fetch_add(class, Ordering::Relaxed) + class;
        self.peak_bytes.fetch_max(n, Ordering::Relaxed);
        self.live_buffers.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(PoolBuf { slice: Some(slice), bytes: class, ptr, ctx: self.clone() }))
    }

    fn release(&self, s: CudaSlice<u8>, bytes: usize) {
        self.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
        self.live_buffers.fetch_sub(1, Ordering::Relaxed);
        match self.pool.lock() {
            Ok(mut p) => p.entry(bytes).or_default().push(s),
            // a poisoned pool: leak the block rather than free it on a thread where this
            // context may not be current
            Err(_) => std::mem::forget(s),
        }
    }

    /// Frees every cached (unused) block (binding this context to the calling thread first:
    /// the frees run on it).
    pub fn trim(&self) {
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        if let Ok(mut p) = self.pool.lock() {
            p.clear();
        }
    }

    /// Uploads `data` into a pooled buffer.
    pub(crate) fn upload<T: Copy>(self: &Arc<Self>, data: &[T]) -> Result<Arc<PoolBuf>> {
        let b = self.alloc(std::mem::size_of_val(data))?;
        if !data.is_empty() {
            self.ctx.bind_to_thread().map_err(|e| driver_err("bind", e))?;
            // SAFETY: the buffer holds at least `size_of_val(data)` bytes; from pageable memory the
            // call returns once `data` has been staged, so it may be dropped afterwards.
            unsafe { cudarc::driver::result::memcpy_htod_async(b.ptr, data, self.stream.cu_stream()) }
                .map_err(|e| driver_err("upload", e))?;
        }
        Ok(b)
    }

    /// Reads `len` values of type `T` back (waits for the stream).
    pub(crate) fn read<T: Copy + Default>(&self, buf: &PoolBuf, len: usize) -> Result<Vec<T>> {
        let mut out = vec![T::default(); len];
        if len > 0 {
            self.ctx.bind_to_thread().map_err(|e| driver_err("bind", e))?;
            // SAFETY: the buffer holds at least `len` values (the tensor's size).
            unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut out, buf.ptr, self.stream.cu_stream()) }
                .map_err(|e| driver_err("download", e))?;
        }
        self.sync()?;
        Ok(out)
    }

    /// Device-to-device copy of `words` 4-byte words.
    pub(crate) fn copy_words(
        &self,
        src: &PoolBuf,
        src_at: usize,
        dst: &PoolBuf,
        dst_at: usize,
        words: usize,
    ) -> Result<()> {
        if words == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread().map_err(|e| driver_err("bind", e))?;
        // SAFETY: both ranges lie inside live allocations of this context (checked by the callers'
        // shapes); the copy is ordered on the one stream.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                dst.ptr + 4 * dst_at as u64,
                src.ptr + 4 * src_at as u64,
                4 * words,
                self.stream.cu_stream(),
            )
        }
        .map_err(|e| driver_err("copy", e))
    }

    /// Waits for the stream; asynchronous kernel faults surface here.
    pub(crate) fn sync(&self) -> Result<()> {
        self.stream.synchronize().map_err(|e| driver_err("synchronize", e))
    }

    /// Launches kernel `name` with pointer arguments `ptrs` and then `params` (which must be the
    /// kernel's parameter struct) by value.
    pub(crate) fn launch<P: KernelParams>(
        &self,
        name: &'static str,
        ptrs: &[u64],
        params: &P,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
    ) -> Result<()> {
        let (f, layout) = self.funcs.get(name).ok_or_else(|| Error::Backend(format!("no kernel {name}")))?;
        if layout.name != P::LAYOUT.name {
            return Err(Error::Backend(format!("kernel {name} takes {}, was given {}", layout.name, P::LAYOUT.name)));
        }
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        if grid.1 > 65535 || grid.2 > 65535 {
            return Err(Error::Backend(format!("kernel {name}: grid {grid:?} exceeds 65535 in y or z")));
        }
        // the struct's words at the start of a fixed buffer: the driver copies the parameter
        // size the kernel declares, sizeof(struct) (the Rust size, checked by NVRTC)
        let mut words = [0u32; PARAM_WORDS];
        let mut n = 0;
        params.each_word(&mut |w| {
            if let Some(slot) = words.get_mut(n) {
                *slot = w;
            }
            n += 1;
        });
        if n > PARAM_WORDS {
            return Err(Error::Backend(format!("kernel {name}: {n} parameter words, at most {PARAM_WORDS}")));
        }
        let mut b = self.stream.launch_builder(f);
        for ptr in ptrs {
            b.arg(ptr);
        }
        b.arg(&words);
        let cfg = LaunchConfig { grid_dim: grid, block_dim: block, shared_mem_bytes: 0 };
        // SAFETY: the argument list matches the kernel's signature (pointers, then its parameter
        // struct, no larger than `words`), and the callers size every buffer for the indices the
        // kernel computes from the parameters.
        unsafe { b.launch(cfg) }.map_err(|e| driver_err(&format!("kernel {name}"), e))?;
        Ok(())
    }

    /// Allocator statistics.
    pub(crate) fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            live_tensors: self.live_buffers.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
            pooled_bytes: self.pool.lock().map(|p| p.iter().map(|(c, v)| c * v.len()).sum()).unwrap_or(0),
        }
    }
}
