//! The wgpu device context: adapter and device selection, the pipeline cache, the buffer
//! pool, kernel dispatch and readback, and the translation of wgpu's errors into `Err`s.
//!
//! Every kernel launch is submitted at once (one command buffer per op). That keeps
//! `queue.write_buffer` uploads ordered with the kernels that read them even when pooled
//! buffers are reused right away; batching launches is a later optimisation.
use crate::kernels::Kernel;
use protocell_core::backend::kernel_abi::KernelParams;
use protocell_core::backend::MemoryStats;
use protocell_core::error::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Threads per workgroup of the one-dimensional kernels (matches `@workgroup_size(64)`).
pub(crate) const WG: u32 = 64;

/// A buffer of the pool: storage, copy source and destination; its size is a size class.
#[derive(Debug)]
pub(crate) struct PoolBuf {
    pub(crate) buf: wgpu::Buffer,
    /// Bytes (the size class).
    pub(crate) bytes: u64,
    ctx: Arc<Context>,
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        self.ctx.release(self.buf.clone(), self.bytes);
    }
}

/// The device and everything cached on it.
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    /// Adapter description, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"`.
    pub info: String,
    pipelines: Mutex<HashMap<&'static str, wgpu::ComputePipeline>>,
    pool: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
    error: Arc<Mutex<Option<String>>>,
    lost: Arc<AtomicBool>,
    live_bytes: AtomicUsize,
    live_buffers: AtomicUsize,
    peak_bytes: AtomicUsize,
    pooled_bytes: AtomicUsize,
    max_binding: u64,
    max_groups: u32,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wgpu::Context({})", self.info)
    }
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if wgpu::Backends::from_env().is_none() {
        desc.backends = wgpu::Backends::all();
    }
    wgpu::Instance::new(desc)
}

/// Names of the adapters wgpu can see (honouring `WGPU_BACKEND`).
pub fn adapters() -> Vec<String> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        })
        .collect()
}

/// Size class of a buffer of `bytes`: `2^k · {1, 1.25, 1.5, 1.75}`, at least 16 bytes.
fn size_class(bytes: u64) -> u64 {
    let n = bytes.max(16);
    let top = 63 - n.leading_zeros() as u64;
    if top < 2 {
        return n;
    }
    let quarter = 1u64 << (top - 2);
    n.div_ceil(quarter) * quarter
}

impl Context {
    /// Opens adapter `index` (in `enumerate_adapters` order, honouring `WGPU_BACKEND`) with
    /// compute shaders; errors say what was found.
    pub fn new(index: usize) -> Result<Arc<Self>> {
        let inst = instance();
        let mut list = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        list.retain(|a| a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS));
        if list.is_empty() {
            return Err(Error::Unavailable(
                "no wgpu adapter with compute shaders (install a Vulkan or GL driver, e.g. Mesa's lavapipe: \
                 apt-get install mesa-vulkan-drivers libvulkan1)"
                    .into(),
            ));
        }
        let n = list.len();
        if index >= n {
            return Err(Error::Unavailable(format!("wgpu adapter {index} does not exist ({n} found)")));
        }
        let adapter = list.swap_remove(index);
        let ai = adapter.get_info();
        let info = format!("{} ({:?})", ai.name, ai.backend);
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("protocell"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::Unavailable(format!("wgpu device on {info}: {e}")))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut g) = sink.lock() {
                g.get_or_insert_with(|| e.to_string());
            }
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        device.set_device_lost_callback(move |_reason, _msg| flag.store(true, Ordering::SeqCst));
        Ok(Arc::new(Self {
            device,
            queue,
            info,
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
            error,
            lost,
            live_bytes: AtomicUsize::new(0),
            live_buffers: AtomicUsize::new(0),
            peak_bytes: AtomicUsize::new(0),
            pooled_bytes: AtomicUsize::new(0),
            max_binding: limits.max_storage_buffer_binding_size.min(limits.max_buffer_size),
            max_groups: limits.max_compute_workgroups_per_dimension,
        }))
    }

    /// The first error wgpu reported since the last check (validation, out of memory,
    /// shader compilation) or a lost device, as an `Err`.
    pub(crate) fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Backend(format!("wgpu device lost ({})", self.info)));
        }
        if let Some(e) = self.error.lock().ok().and_then(|mut g| g.take()) {
            return Err(Error::Backend(format!("wgpu: {e}")));
        }
        Ok(())
    }

    /// A pooled buffer of at least `bytes` bytes (contents unspecified).
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64) -> Result<Arc<PoolBuf>> {
        let class = size_class(bytes);
        if class > self.max_binding {
            return Err(Error::Backend(format!(
                "a {bytes}-byte tensor exceeds this adapter's largest storage binding ({} bytes)",
                self.max_binding
            )));
        }
        let pooled = self.pool.lock().ok().and_then(|mut p| p.get_mut(&class).and_then(Vec::pop));
        let buf = match pooled {
            Some(b) => {
                self.pooled_bytes.fetch_sub(class as usize, Ordering::Relaxed);
                b
            }
            None => {
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size: class,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.check()?;
                b
            }
        };
        let live = self.live_bytes.fetch_add(class as usize, Ordering::Relaxed) + class as usize;
        self.live_buffers.fetch_add(1, Ordering::Relaxed);
        self.peak_bytes.fetch_max(live, Ordering::Relaxed);
        Ok(Arc::new(PoolBuf { buf, bytes: class, ctx: self.clone() }))
    }

    fn release(&self, buf: wgpu::Buffer, bytes: u64) {
        self.live_bytes.fetch_sub(bytes as usize, Ordering::Relaxed);
        self.live_buffers.fetch_sub(1, Ordering::Relaxed);
        const POOL_CAP: usize = 1 << 30;
        if self.pooled_bytes.load(Ordering::Relaxed) + bytes as usize > POOL_CAP {
            buf.destroy();
            return;
        }
        if let Ok(mut p) = self.pool.lock() {
            p.entry(bytes).or_default().push(buf);
            self.pooled_bytes.fetch_add(bytes as usize, Ordering::Relaxed);
        }
    }

    /// A buffer holding `data` (uploaded before any later launch).
    pub(crate) fn upload<T: bytemuck::Pod>(self: &Arc<Self>, data: &[T]) -> Result<Arc<PoolBuf>> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let b = self.alloc(bytes.len() as u64)?;
        if !bytes.is_empty() {
            self.queue.write_buffer(&b.buf, 0, bytes);
        }
        self.check()?;
        Ok(b)
    }

    /// Copies the first `len` elements of `buf` to the host.
    pub(crate) fn read<T: bytemuck::Pod>(&self, buf: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes.next_multiple_of(4));
        let sub = self.queue.submit([enc.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::Wait { submission_index: Some(sub), timeout: None })
            .map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
        self.check()?;
        rx.recv()
            .map_err(|_| Error::Backend("wgpu readback was dropped".into()))?
            .map_err(|e| Error::Backend(format!("wgpu readback: {e}")))?;
        let out = {
            let view = slice.get_mapped_range().map_err(|e| Error::Backend(format!("wgpu readback: {e}")))?;
            bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec()
        };
        staging.unmap();
        staging.destroy();
        Ok(out)
    }

    /// Copies `words` f32/u32 words from `src[src_at..]` to `dst[dst_at..]` (no kernel).
    pub(crate) fn copy_words(
        &self,
        src: &wgpu::Buffer,
        src_at: usize,
        dst: &wgpu::Buffer,
        dst_at: usize,
        words: usize,
    ) -> Result<()> {
        if words == 0 {
            return Ok(());
        }
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("copy") });
        enc.copy_buffer_to_buffer(src, 4 * src_at as u64, dst, 4 * dst_at as u64, 4 * words as u64);
        self.queue.submit([enc.finish()]);
        self.check()
    }

    /// Waits until the queue is idle.
    pub(crate) fn sync(&self) -> Result<()> {
        self.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Backend(format!("wgpu poll: {e}")))?;
        self.check()
    }

    fn pipeline(&self, kernel: &Kernel) -> Result<wgpu::ComputePipeline> {
        let name = kernel.name;
        if let Some(p) = self.pipelines.lock().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(p);
        }
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
        });
        let p = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        self.check().map_err(|e| Error::Backend(format!("kernel {name}: {e}")))?;
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(name, p.clone());
        }
        Ok(p)
    }

    /// Launches `kernel` with `buffers` bound at `@group(0) @binding(0..)` in order, `params`
    /// (which must be the kernel's parameter struct) uploaded and bound after them, and
    /// `groups` workgroups, spread over x and y when they exceed the per-dimension limit
    /// (kernels compute their linear workgroup index as `wid.y * nwg.x + wid.x`).
    pub(crate) fn launch<P: KernelParams>(
        self: &Arc<Self>,
        kernel: &Kernel,
        buffers: &[&wgpu::Buffer],
        params: &P,
        groups: u32,
    ) -> Result<()> {
        let name = kernel.name;
        if kernel.params.name != P::LAYOUT.name {
            return Err(Error::Backend(format!(
                "kernel {name} takes {}, was given {}",
                kernel.params.name,
                P::LAYOUT.name
            )));
        }
        if groups == 0 {
            return Ok(());
        }
        let p = self.upload(&params.words())?;
        let mut all = buffers.to_vec();
        all.push(&p.buf);
        let pipeline = self.pipeline(kernel)?;
        let entries: Vec<wgpu::BindGroupEntry> = all
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
            .collect();
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let (x, y) =
            if groups <= self.max_groups { (groups, 1) } else { (self.max_groups, groups.div_ceil(self.max_groups)) };
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(name) });
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(name), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        self.queue.submit([enc.finish()]);
        self.check().map_err(|e| Error::Backend(format!("kernel {name}: {e}")))
    }

    /// Allocator statistics.
    pub(crate) fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            live_tensors: self.live_buffers.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
            peak_bytes: self.peak_bytes.load(Ordering::Relaxed),
            pooled_bytes: self.pooled_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn size_classes() {
        assert_eq!(super::size_class(1), 16);
        assert_eq!(super::size_class(16), 16);
        assert_eq!(super::size_class(17), 20);
        assert_eq!(super::size_class(1000), 1024);
        assert_eq!(super::size_class(1025), 1280);
    }
}
