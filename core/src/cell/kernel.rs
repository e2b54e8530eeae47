//! The host side of the colony kernels of the GPU backends: the parameter struct that the
//! WGSL kernels of `protocell-wgpu` and the CUDA kernels of `protocell-cuda` read, the shapes
//! and scratch strides behind it, and the forward and backward host code, generic over the
//! [`GpuKernels`] a backend provides (each backend's `CellOps` calls [`colony_fwd`] and
//! [`colony_bwd`]).
use super::{CellMode, ColonyGrads, ColonyOut, ColonySpec, N_COEFFS};
use crate::backend::kernel_abi::{u32_of, GpuKernels, Grid};
use crate::backend::{Backend, Reduce};
use crate::error::{Error, Result};
use alloc::format;

type T<B> = <B as Backend>::Tensor;

crate::kernel_params! {
    /// `colony_fwd` and `colony_bwd`: `t` tokens of `n` blocks, `steps` inner steps, each
    /// token's trajectory and scratch at `token·stride` in the work buffer.
    pub struct ColonyParams {
        /// Tokens.
        pub t: u32,
        /// Blocks per token.
        pub n: u32,
        /// Inner steps `K`.
        pub steps: u32,
        /// 0 as coded, 1 as described, 2 sound.
        pub mode: u32,
        /// Step size.
        pub dt: f32,
        /// Row-normalisation ε.
        pub row_eps: f32,
        /// Sharpness of the sound mode's smooth bound.
        pub sharpness: f32,
        /// Pruning on (1) or off (0).
        pub pruning: u32,
        /// Pruning's life decay rate.
        pub rate: f32,
        /// Pruning's life threshold.
        pub threshold: f32,
        /// Floats of one token's trajectory and scratch.
        pub stride: u32,
    }
}

/// Shapes and constants of one colony call (see the colony kernels for the per-token
/// trajectory and scratch layout the strides describe).
#[derive(Debug, Clone, PartialEq)]
pub struct ColonyGeom {
    /// Tokens.
    pub t: usize,
    /// Blocks per token.
    pub n: usize,
    spec: ColonySpec,
}

impl ColonyGeom {
    /// Checks `h0: [T, N, 4]`, `w0: [T, N, N]`, `stim: [T, N]`, `coeffs: [9]` and the spec.
    pub fn new(h0: &[usize], w0: &[usize], stim: &[usize], coeffs: &[usize], spec: &ColonySpec) -> Result<Self> {
        spec.validate()?;
        let [t, n, 4] = h0[..] else {
            return Err(Error::InvalidArgument(format!("colony: h0 must be [T, N, 4], got {h0:?}")));
        };
        if w0 != [t, n, n] || stim != [t, n] || coeffs != [N_COEFFS] {
            return Err(Error::InvalidArgument(format!(
                "colony: expected w0 [{t}, {n}, {n}], stim [{t}, {n}], coeffs [{N_COEFFS}]; got {w0:?}, {stim:?}, {coeffs:?}"
            )));
        }
        Ok(Self { t, n, spec: *spec })
    }

    /// Rejects output gradients `dh`, `dw` whose shapes differ from the states'.
    pub fn check_grads(&self, dh: &[usize], dw: &[usize]) -> Result<()> {
        let (t, n) = (self.t, self.n);
        if dh != [t, n, 4] || dw != [t, n, n] {
            return Err(Error::InvalidArgument(format!(
                "colony_bwd: gradients {dh:?}, {dw:?} do not match the states [{t}, {n}, 4], [{t}, {n}, {n}]"
            )));
        }
        Ok(())
    }

    /// Floats of one token's forward trajectory and scratch:
    /// `H (K+1)·4N | W (K+1)·N² | alive (K+1)·N | life N | den N | nb 4N | u 4N`.
    pub fn stride_fwd(&self) -> usize {
        let n = self.n;
        (self.spec.steps + 1) * (5 * n + n * n) + 10 * n
    }

    /// [`Self::stride_fwd`] plus the backward scratch
    /// `g_h 4N | g_w N² | gh1 4N | gw_prev N² | gu 4N | gh_prev 4N | gnb 4N | gwhat N`.
    pub fn stride_bwd(&self) -> usize {
        let n = self.n;
        self.stride_fwd() + 20 * n + 2 * n * n + n
    }

    /// Lengths of the four blocks of the backward kernel's output
    /// `[dh⁰ T·4N | dW⁰ T·N² | dstim T·N | dcoeffs per token T·9]`.
    pub fn grad_parts(&self) -> [usize; 4] {
        let (t, n) = (self.t, self.n);
        [t * 4 * n, t * n * n, t * n, t * N_COEFFS]
    }

    /// The kernels' parameters for a work buffer of `stride` floats per token.
    pub fn params(&self, stride: usize) -> Result<ColonyParams> {
        let s = &self.spec;
        let mode = match s.mode {
            CellMode::AsCoded => 0,
            CellMode::AsDescribed => 1,
            CellMode::Sound => 2,
        };
        let (rate, threshold) = s.pruning.map_or((0.0f32, 0.0f32), |p| (p.rate, p.threshold));
        Ok(ColonyParams {
            t: u32_of(self.t, "tokens")?,
            n: u32_of(self.n, "blocks")?,
            steps: u32_of(s.steps, "steps")?,
            mode,
            dt: s.dt,
            row_eps: s.row_eps,
            sharpness: s.sharpness,
            pruning: s.pruning.is_some() as u32,
            rate,
            threshold,
            stride: u32_of(stride, "stride")?,
        })
    }

    /// The packed `[coefficients | stimulus]` buffer the kernels read (`sc`).
    fn coeffs_and_stim<B: GpuKernels>(&self, coeffs: &T<B>, stim: &T<B>) -> Result<T<B>> {
        let sc = B::alloc(&B::device(coeffs), N_COEFFS + self.t * self.n)?;
        B::copy_words(coeffs, 0, &sc, 0, N_COEFFS)?;
        B::copy_words(stim, 0, &sc, N_COEFFS, self.t * self.n)?;
        Ok(sc)
    }
}

/// The colony forward through the kernel `colony_fwd`, one thread per token
/// ([`super::CellOps::colony_fwd`]). Buffers: `h0, w0, sc, h, w, alive, work`.
pub fn colony_fwd<B: GpuKernels>(
    h0: T<B>,
    w0: T<B>,
    stim: T<B>,
    coeffs: T<B>,
    spec: &ColonySpec,
) -> Result<ColonyOut<B>> {
    let c = ColonyGeom::new(B::shape(&h0), B::shape(&w0), B::shape(&stim), B::shape(&coeffs), spec)?;
    let dev = B::device(&h0);
    let (t, n) = (c.t, c.n);
    let (h, w, alive) = (B::alloc(&dev, t * 4 * n)?, B::alloc(&dev, t * n * n)?, B::alloc(&dev, t * n)?);
    if t > 0 && n > 0 {
        let sc = c.coeffs_and_stim::<B>(&coeffs, &stim)?;
        let stride = c.stride_fwd();
        let work = B::alloc(&dev, t * stride)?;
        let bufs = [&h0, &w0, &sc, &h, &w, &alive, &work];
        B::launch(&dev, "colony_fwd", &bufs, &c.params(stride)?, Grid::Items(t))?;
    }
    Ok((B::reshape(h, &[t, n, 4])?, B::reshape(w, &[t, n, n])?, B::reshape(alive, &[t, n])?))
}

/// The colony backward through the kernel `colony_bwd`, one thread per token recomputing its
/// trajectory ([`super::CellOps::colony_bwd`]). Buffers: `h0, w0, sc, dh, dw, gout, work`;
/// the packed output is split into its four gradients and the per-token coefficient
/// gradients are summed over tokens in order.
#[allow(clippy::too_many_arguments)]
pub fn colony_bwd<B: GpuKernels>(
    h0: T<B>,
    w0: T<B>,
    stim: T<B>,
    coeffs: T<B>,
    spec: &ColonySpec,
    dh: T<B>,
    dw: T<B>,
) -> Result<ColonyGrads<B>> {
    let c = ColonyGeom::new(B::shape(&h0), B::shape(&w0), B::shape(&stim), B::shape(&coeffs), spec)?;
    c.check_grads(B::shape(&dh), B::shape(&dw))?;
    let dev = B::device(&h0);
    let (t, n) = (c.t, c.n);
    if t == 0 || n == 0 {
        let z = |s: &[usize]| B::full(0.0, s, &dev);
        return Ok((z(&[t, n, 4])?, z(&[t, n, n])?, z(&[t, n])?, z(&[N_COEFFS])?));
    }
    let parts = c.grad_parts();
    let gout = B::alloc(&dev, parts.iter().sum())?;
    let sc = c.coeffs_and_stim::<B>(&coeffs, &stim)?;
    let stride = c.stride_bwd();
    let work = B::alloc(&dev, t * stride)?;
    let bufs = [&h0, &w0, &sc, &dh, &dw, &gout, &work];
    B::launch(&dev, "colony_bwd", &bufs, &c.params(stride)?, Grid::Items(t))?;
    let mut at = 0;
    let mut part = |len: usize| -> Result<T<B>> {
        let b = B::alloc(&dev, len)?;
        B::copy_words(&gout, at, &b, 0, len)?;
        at += len;
        Ok(b)
    };
    let (gh, gw, gs, gc) = (part(parts[0])?, part(parts[1])?, part(parts[2])?, part(parts[3])?);
    let gc = B::reshape(B::reduce(Reduce::Sum, B::reshape(gc, &[t, N_COEFFS])?, 0)?, &[N_COEFFS])?;
    Ok((B::reshape(gh, &[t, n, 4])?, B::reshape(gw, &[t, n, n])?, B::reshape(gs, &[t, n])?, gc))
}
