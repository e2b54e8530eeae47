//! The host side of the colony kernels of the GPU backends: the parameter struct that the
//! WGSL kernels of `protocell-wgpu` and the CUDA kernels of `protocell-cuda` read, and the
//! shapes and scratch strides behind it.
use super::{CellMode, ColonySpec, N_COEFFS};
use crate::backend::kernel_abi::u32_of;
use crate::error::{Error, Result};
use alloc::format;

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
}
