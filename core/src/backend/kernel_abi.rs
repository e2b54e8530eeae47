//! The host side of the GPU backends' kernels, backend-neutral: the typed launch parameters
//! that the WGSL kernels of `protocell-wgpu` and the CUDA kernels of `protocell-cuda` read,
//! the geometry behind them, and the host code of the fused attention kernels, generic over
//! the [`GpuKernels`] a backend provides. Each backend only uploads and launches.
//!
//! Every kernel reads its parameters as one `#[repr(C)]` struct of 4-byte fields, declared
//! once in Rust with [`kernel_params!`](crate::kernel_params): the WGSL and CUDA C
//! declarations of the struct are generated from that definition ([`ParamLayout::wgsl`],
//! [`ParamLayout::cuda`]) and prepended to the kernel sources, and the host uploads
//! [`KernelParams::words`] (WGSL: a storage buffer bound last; CUDA: the kernel's last
//! argument, by value). The generic structs live here, the colony's in
//! [`crate::cell::kernel`].
use super::{attention_dropout_mask, AdamWStep, AttnSpec, Backend, Binary, Dist, Reduce, Unary};
use crate::error::{Error, Result};
use crate::rng::{bernoulli_threshold, RngKey};
use crate::shape;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

type T<B> = <B as Backend>::Tensor;

/// The scalar type of a kernel parameter field. Every one is 4 bytes with 4-byte alignment,
/// so a struct of them (and of fixed arrays of them) has no padding and the same layout in
/// Rust (`#[repr(C)]`), WGSL (a storage-buffer struct) and C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `u32` (WGSL `u32`, C `unsigned int`).
    U32,
    /// `f32` (WGSL `f32`, C `float`).
    F32,
    /// `i32` (WGSL `i32`, C `int`).
    I32,
}

impl ParamKind {
    /// The WGSL type.
    pub fn wgsl(self) -> &'static str {
        match self {
            Self::U32 => "u32",
            Self::F32 => "f32",
            Self::I32 => "i32",
        }
    }

    /// The C type.
    pub fn c(self) -> &'static str {
        match self {
            Self::U32 => "unsigned int",
            Self::F32 => "float",
            Self::I32 => "int",
        }
    }
}

/// A type that a field of a kernel parameter struct may have: `u32`, `f32`, `i32` or a fixed
/// array of one of them.
pub trait ParamField: Copy {
    /// The scalar type.
    const KIND: ParamKind;
    /// `Some(N)` for an array of `N` scalars, `None` for a scalar.
    const LEN: Option<usize>;
    /// Calls `f` with the value's 4-byte words in memory order (floats as their bits).
    fn each_word(&self, f: &mut dyn FnMut(u32));
}

macro_rules! param_field {
    ($($t:ty => $kind:ident, |$v:ident| $word:expr;)*) => {$(
        impl ParamField for $t {
            const KIND: ParamKind = ParamKind::$kind;
            const LEN: Option<usize> = None;
            fn each_word(&self, f: &mut dyn FnMut(u32)) {
                let $v = *self;
                f($word);
            }
        }
        impl<const N: usize> ParamField for [$t; N] {
            const KIND: ParamKind = ParamKind::$kind;
            const LEN: Option<usize> = Some(N);
            fn each_word(&self, f: &mut dyn FnMut(u32)) {
                for &$v in self {
                    f($word);
                }
            }
        }
    )*};
}

param_field! {
    u32 => U32, |v| v;
    f32 => F32, |v| v.to_bits();
    i32 => I32, |v| v as u32;
}

/// One field of a kernel parameter struct, as the Rust definition lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDecl {
    /// Field name (the same in Rust, WGSL and C).
    pub name: &'static str,
    /// Scalar type.
    pub kind: ParamKind,
    /// `Some(N)` for an array of `N` scalars.
    pub len: Option<usize>,
    /// Byte offset in the struct (`core::mem::offset_of!`).
    pub offset: usize,
}

/// The layout of a kernel parameter struct: its name, fields in declaration (= memory)
/// order and size, from which the WGSL and C declarations are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamLayout {
    /// Struct name (the same in Rust, WGSL and C).
    pub name: &'static str,
    /// Fields in order.
    pub fields: &'static [ParamDecl],
    /// Size in bytes (`core::mem::size_of`).
    pub size: usize,
}

impl ParamLayout {
    /// The WGSL declaration, `struct Name { a: u32, b: f32, c: array<u32, 4>, }`, one field
    /// a line.
    pub fn wgsl(&self) -> String {
        let mut s = format!("struct {} {{\n", self.name);
        for f in self.fields {
            let ty = match f.len {
                Some(n) => format!("array<{}, {n}>", f.kind.wgsl()),
                None => f.kind.wgsl().into(),
            };
            s.push_str(&format!("    {}: {ty},\n", f.name));
        }
        s.push_str("}\n");
        s
    }

    /// The C declaration, `struct Name { unsigned int a; float b; unsigned int c[4]; };`, one
    /// field a line, followed by `static_assert`s that the C compiler's size of the struct and
    /// offset of every field are the Rust definition's (with a definition of `offsetof` for
    /// NVRTC, which has no standard headers).
    pub fn cuda(&self) -> String {
        let name = self.name;
        let mut s = String::from(CUDA_OFFSETOF);
        s.push_str(&format!("struct {name} {{\n"));
        for f in self.fields {
            let len = f.len.map_or(String::new(), |n| format!("[{n}]"));
            s.push_str(&format!("    {} {}{len};\n", f.kind.c(), f.name));
        }
        s.push_str("};\n");
        s.push_str(&format!(
            "static_assert(sizeof({name}) == {}, \"{name}: size differs from the Rust definition\");\n",
            self.size
        ));
        for f in self.fields {
            s.push_str(&format!(
                "static_assert(offsetof({name}, {0}) == {1}, \"{name}::{0}: offset differs from the Rust definition\");\n",
                f.name, f.offset
            ));
        }
        s
    }
}

/// `offsetof` where no header defines it: NVRTC (EDG's `__INTADDR__`, a constant expression)
/// or `<cstddef>` elsewhere.
const CUDA_OFFSETOF: &str = "#ifndef offsetof
#ifdef __CUDACC_RTC__
#define offsetof(T, m) ((unsigned long)__INTADDR__(&(((T*)0)->m)))
#else
#include <cstddef>
#endif
#endif
";

/// A kernel's launch parameters: a `#[repr(C)]` struct of [`ParamField`]s, declared with
/// [`kernel_params!`](crate::kernel_params), which implements this trait.
pub trait KernelParams: Copy {
    /// The struct's layout, from its Rust definition.
    const LAYOUT: ParamLayout;

    /// Calls `f` with the struct's 4-byte words in memory order.
    fn each_word(&self, f: &mut dyn FnMut(u32));

    /// The struct's name.
    fn name() -> &'static str {
        Self::LAYOUT.name
    }

    /// The WGSL declaration of the struct ([`ParamLayout::wgsl`]).
    fn wgsl() -> String {
        Self::LAYOUT.wgsl()
    }

    /// The C declaration of the struct with its layout checks ([`ParamLayout::cuda`]).
    fn cuda() -> String {
        Self::LAYOUT.cuda()
    }

    /// The struct's bytes as 4-byte words (floats as their bits), what a kernel reads.
    fn words(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(Self::LAYOUT.size / 4);
        self.each_word(&mut |w| out.push(w));
        out
    }
}

/// Declares kernel parameter structs: each becomes a `#[repr(C)]` struct (deriving `Debug`,
/// `Clone`, `Copy`, `PartialEq` and `Default`) that implements
/// [`KernelParams`](crate::backend::kernel_abi::KernelParams). Fields are `u32`, `f32`, `i32`
/// or fixed arrays of them ([`ParamField`](crate::backend::kernel_abi::ParamField)); a
/// compile-time check rejects padding. Field names must be valid (and not reserved)
/// identifiers in WGSL and C, and must not start with `gl` (GLSL reserves the prefix).
///
/// ```
/// protocell_core::kernel_params! {
///     /// Parameters of an example kernel.
///     pub struct ExampleParams {
///         /// Elements.
///         pub n: u32,
///         /// A scale.
///         pub scale: f32,
///         /// A strided layout.
///         pub at: [u32; 4],
///     }
/// }
/// use protocell_core::backend::kernel_abi::KernelParams;
/// let p = ExampleParams { n: 3, scale: 1.0, at: [0, 1, 2, 3] };
/// assert_eq!(p.words(), vec![3, 1.0f32.to_bits(), 0, 1, 2, 3]);
/// assert!(ExampleParams::wgsl().contains("at: array<u32, 4>,"));
/// assert!(ExampleParams::cuda().contains("static_assert(sizeof(ExampleParams) == 24"));
/// ```
#[macro_export]
macro_rules! kernel_params {
    ($(
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Default)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        // 4-byte fields only, hence no padding: the fields' words in order are the struct's bytes
        const _: () = {
            assert!(
                ::core::mem::align_of::<$name>() == 4,
                ::core::concat!(::core::stringify!($name), ": kernel parameters must be 4-byte aligned")
            );
            assert!(
                ::core::mem::size_of::<$name>() == 0 $( + ::core::mem::size_of::<$ty>() )*,
                ::core::concat!(::core::stringify!($name), ": kernel parameters must not be padded")
            );
        };

        impl $crate::backend::kernel_abi::KernelParams for $name {
            const LAYOUT: $crate::backend::kernel_abi::ParamLayout = $crate::backend::kernel_abi::ParamLayout {
                name: ::core::stringify!($name),
                fields: &[$(
                    $crate::backend::kernel_abi::ParamDecl {
                        name: ::core::stringify!($field),
                        kind: <$ty as $crate::backend::kernel_abi::ParamField>::KIND,
                        len: <$ty as $crate::backend::kernel_abi::ParamField>::LEN,
                        offset: ::core::mem::offset_of!($name, $field),
                    }
                ),*],
                size: ::core::mem::size_of::<$name>(),
            };

            fn each_word(&self, f: &mut dyn FnMut(u32)) {
                $( $crate::backend::kernel_abi::ParamField::each_word(&self.$field, f); )*
            }
        }
    )*};
}

/// The most axes of a broadcast binary op or a strided copy (the length of the shape and
/// stride arrays of [`BinaryParams`] and [`CopyParams`]).
pub const MAX_RANK: usize = 20;

crate::kernel_params! {
    /// `fill`: `out[i] = value` for `i < n`.
    pub struct FillParams {
        /// Elements.
        pub n: u32,
        /// The value.
        pub value: f32,
    }

    /// `unary`: `y[i] = f(x[i])` for `i < n`.
    pub struct UnaryParams {
        /// Elements.
        pub n: u32,
        /// Op code ([`unary_code`]).
        pub op: u32,
        /// First parameter (Affine's mul, Powf's exponent, Clamp's min).
        pub a: f32,
        /// Second parameter (Affine's add, Clamp's max).
        pub b: f32,
    }

    /// `binary`: `out[i] = op(a[ia], b[ib])` with numpy broadcasting over `rank` axes.
    pub struct BinaryParams {
        /// Elements of the output.
        pub n: u32,
        /// Op code ([`binary_code`]).
        pub op: u32,
        /// Axes (at most [`MAX_RANK`]).
        pub rank: u32,
        /// Output shape (the first `rank` entries).
        pub shape: [u32; MAX_RANK],
        /// Strides of `a` broadcast to the output (0 on broadcast axes).
        pub a_strides: [u32; MAX_RANK],
        /// Strides of `b` broadcast to the output.
        pub b_strides: [u32; MAX_RANK],
    }

    /// `copy`: for every index `j` of `shape`,
    /// `dst[dst_base + Σ jₖ·dst_stridesₖ] = src[src_base + Σ jₖ·src_stridesₖ]`.
    pub struct CopyParams {
        /// Elements.
        pub n: u32,
        /// Axes (at most [`MAX_RANK`]).
        pub rank: u32,
        /// First source element.
        pub src_base: u32,
        /// First destination element.
        pub dst_base: u32,
        /// The logical shape (the first `rank` entries).
        pub shape: [u32; MAX_RANK],
        /// Source strides.
        pub src_strides: [u32; MAX_RANK],
        /// Destination strides.
        pub dst_strides: [u32; MAX_RANK],
    }

    /// `reduce`: `x` viewed as `[outer, n, inner]`, `out[o, i] = op over k of x[o, k, i]`.
    pub struct ReduceParams {
        /// Outputs, `outer·inner`.
        pub outputs: u32,
        /// The reduced axis' length (≥ 1).
        pub n: u32,
        /// Elements after the axis (≥ 1).
        pub inner: u32,
        /// Sum 0, Mean 1, Max 2, Min 3.
        pub op: u32,
    }

    /// `matmul`: batched `C[b] = op(A[b])·op(B[b])`, `A` `[m, k]` (`[k, m]` when `ta`), `B`
    /// `[k, n]` (`[n, k]` when `tb`), row-major.
    pub struct MatmulParams {
        /// Batch.
        pub batch: u32,
        /// Rows of C.
        pub m: u32,
        /// Columns of C.
        pub n: u32,
        /// Inner dimension.
        pub k: u32,
        /// A transposed (1) or not (0).
        pub ta: u32,
        /// B transposed (1) or not (0).
        pub tb: u32,
        /// Elements between A's matrices (0: one shared matrix).
        pub a_stride: u32,
        /// Elements between B's matrices (0: one shared matrix).
        pub b_stride: u32,
        /// Tiles along n, of the kernel's tile width (64 in WGSL; the CUDA kernel reads its
        /// 16-wide tiles from the grid).
        pub tiles_n: u32,
        /// Tiles along m.
        pub tiles_m: u32,
    }

    /// `gather` (`out[i, d] = table[ids[i], d]`) and `scatter` (`out[v, d] = Σ_{ids[i] = v}
    /// src[i, d]`).
    pub struct IndexParams {
        /// Output elements, rows × width.
        pub n: u32,
        /// Row width (≥ 1).
        pub width: u32,
    }

    /// `random`: element `e < n` of a [`Dist`] stream of key `(seed, offset)` (Philox-4x32-10,
    /// as `rng::sample`).
    pub struct RandomParams {
        /// Elements.
        pub n: u32,
        /// Uniform 0, Bernoulli 1, Normal 2.
        pub dist: u32,
        /// Uniform's low bound, Normal's mean.
        pub a: f32,
        /// Uniform's high bound, Normal's standard deviation.
        pub b: f32,
        /// Bernoulli's threshold on 16-bit words ([`bernoulli_threshold`]).
        pub threshold: u32,
        /// Low word of the seed.
        pub seed_lo: u32,
        /// High word of the seed.
        pub seed_hi: u32,
        /// Low word of the stream offset.
        pub offset_lo: u32,
        /// High word of the stream offset.
        pub offset_hi: u32,
    }

    /// The row kernels over `[rows, width]`: `softmax` and `cross_entropy` (width = classes).
    pub struct RowParams {
        /// Rows.
        pub rows: u32,
        /// Row width.
        pub width: u32,
    }

    /// `cross_entropy_bwd`: `dlogits[r, c] = (e^{x[r, c] − lse[r]} − [c = t[r]])·dloss·inv_rows`.
    pub struct CrossEntropyBwdParams {
        /// Elements, rows × classes.
        pub n: u32,
        /// Classes (≥ 1).
        pub classes: u32,
        /// `1 / rows` (the mean's factor).
        pub inv_rows: f32,
    }

    /// `adamw`: one AdamW update of `n` elements (the constants of [`AdamWStep`]).
    pub struct AdamWParams {
        /// Elements.
        pub n: u32,
        /// β₁.
        pub beta1: f32,
        /// β₂.
        pub beta2: f32,
        /// ε.
        pub eps: f32,
        /// The decoupled weight-decay factor.
        pub decay: f32,
        /// `lr / (1 − β₁ᵗ)`.
        pub step_size: f32,
        /// `1 / √(1 − β₂ᵗ)`.
        pub inv_sqrt_bc2: f32,
        /// The gradient's factor.
        pub grad_scale: f32,
    }

    /// `layer_norm`: LayerNorm, or RMSNorm when `rms` is 1, over rows of `width`.
    pub struct LayerNormParams {
        /// Rows.
        pub rows: u32,
        /// Row width.
        pub width: u32,
        /// ε.
        pub eps: f32,
        /// RMSNorm (1) or LayerNorm (0).
        pub rms: u32,
    }

    /// `layer_norm_bwd` and `layer_norm_params`: the norm's backward over rows of `width`.
    pub struct NormBwdParams {
        /// Rows.
        pub rows: u32,
        /// Row width.
        pub width: u32,
        /// RMSNorm (1) or LayerNorm (0).
        pub rms: u32,
    }

    /// The attention row kernels `attention` and `attention_bwd` (see [`AttnGeom`]); a layout
    /// is `[base, batch stride, head stride, row stride]` in elements.
    pub struct AttnParams {
        /// Query rows, `b·H·Sq`.
        pub rows: u32,
        /// Queries.
        pub sq: u32,
        /// Keys.
        pub sk: u32,
        /// Width of q and k.
        pub d: u32,
        /// Heads.
        pub heads: u32,
        /// Causal mask (1) or not (0).
        pub causal: u32,
        /// Score scale.
        pub scale: f32,
        /// Dropout mask given (1) or not (0).
        pub has_mask: u32,
        /// Rows of q (and dq).
        pub q: [u32; 4],
        /// Rows of k.
        pub k: [u32; 4],
        /// Rows of v.
        pub v: [u32; 4],
        /// Rows of o (and dout).
        pub o: [u32; 4],
        /// Width of v and o.
        pub dv: u32,
    }

    /// `attention_apply`: `dst = A·x` (or `Aᵀ·x` when `trans`) per head, `A` the `[Sq, Sk]`
    /// matrices at `a_off`, `x` and `dst` in strided layouts.
    pub struct AttnApplyParams {
        /// Output elements, `bh·rows·width`.
        pub total: u32,
        /// Output rows per head (`Sq`, or `Sk` when `trans`).
        pub rows: u32,
        /// Row width.
        pub width: u32,
        /// Heads.
        pub heads: u32,
        /// `Aᵀ` (1) or `A` (0).
        pub trans: u32,
        /// Queries.
        pub sq: u32,
        /// Keys.
        pub sk: u32,
        /// First element of A.
        pub a_off: u32,
        /// Rows of x.
        pub x: [u32; 4],
        /// Rows of the output.
        pub dst: [u32; 4],
    }
}

/// `n` as a kernel word (indices are 32-bit in the kernels).
pub fn u32_of(n: usize, what: &str) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::InvalidArgument(format!("{what} {n} exceeds the GPU kernels' 2³² limit")))
}

/// `values` as kernel words in a fixed array of [`MAX_RANK`] (zeros after them).
fn rank_words(values: impl IntoIterator<Item = usize>, what: &str) -> Result<[u32; MAX_RANK]> {
    let mut out = [0u32; MAX_RANK];
    for (i, v) in values.into_iter().enumerate() {
        *out.get_mut(i).ok_or_else(|| {
            Error::InvalidArgument(format!("the GPU kernels take at most {MAX_RANK} axes, got a longer {what}"))
        })? = u32_of(v, what)?;
    }
    Ok(out)
}

impl UnaryParams {
    /// `op` over `n` elements.
    pub fn new(op: Unary, n: usize) -> Result<Self> {
        let (op, a, b) = unary_code(op);
        Ok(Self { n: u32_of(n, "elements")?, op, a, b })
    }
}

impl BinaryParams {
    /// `op` of `a` and `b` broadcast to `out` (the broadcast of both shapes).
    pub fn new(op: Binary, out: &[usize], a: &[usize], b: &[usize]) -> Result<Self> {
        Ok(Self {
            n: u32_of(shape::numel(out), "elements")?,
            op: binary_code(op),
            rank: u32_of(out.len(), "rank")?,
            shape: rank_words(out.iter().copied(), "shape")?,
            a_strides: rank_words(broadcast_strides(a, out), "stride")?,
            b_strides: rank_words(broadcast_strides(b, out), "stride")?,
        })
    }
}

impl CopyParams {
    /// Every index of `shape` from `src_base + Σ jₖ·src_stridesₖ` to `dst_base + Σ jₖ·dst_stridesₖ`.
    pub fn new(
        shape: &[usize],
        src_base: usize,
        src_strides: &[usize],
        dst_base: usize,
        dst_strides: &[usize],
    ) -> Result<Self> {
        Ok(Self {
            n: u32_of(shape::numel(shape), "elements")?,
            rank: u32_of(shape.len(), "rank")?,
            src_base: u32_of(src_base, "offset")?,
            dst_base: u32_of(dst_base, "offset")?,
            shape: rank_words(shape.iter().copied(), "shape")?,
            src_strides: rank_words(src_strides.iter().copied(), "stride")?,
            dst_strides: rank_words(dst_strides.iter().copied(), "stride")?,
        })
    }
}

impl ReduceParams {
    /// `op` along an axis of length `n ≥ 1` of `x` viewed as `[outer, n, inner]`.
    pub fn new(op: Reduce, outer: usize, n: usize, inner: usize) -> Result<Self> {
        let op = match op {
            Reduce::Sum => 0,
            Reduce::Mean => 1,
            Reduce::Max => 2,
            Reduce::Min => 3,
        };
        Ok(Self {
            outputs: u32_of(outer * inner, "elements")?,
            n: u32_of(n, "axis")?,
            inner: u32_of(inner.max(1), "inner")?,
            op,
        })
    }
}

impl RandomParams {
    /// `n` elements of `dist` from `key`.
    pub fn new(dist: Dist, key: RngKey, n: usize) -> Result<Self> {
        let (dist, a, b, threshold) = match dist {
            Dist::Uniform { lo, hi } => (0, lo, hi, 0),
            Dist::Bernoulli { p } => (1, 0.0, 0.0, bernoulli_threshold(p)),
            Dist::Normal { mean, std } => (2, mean, std, 0),
        };
        Ok(Self {
            n: u32_of(n, "elements")?,
            dist,
            a,
            b,
            threshold,
            seed_lo: key.seed as u32,
            seed_hi: (key.seed >> 32) as u32,
            offset_lo: key.offset as u32,
            offset_hi: (key.offset >> 32) as u32,
        })
    }
}

impl AdamWParams {
    /// The update `h` over `n` elements.
    pub fn new(h: &AdamWStep, n: usize) -> Result<Self> {
        Ok(Self {
            n: u32_of(n, "elements")?,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            decay: h.decay,
            step_size: h.step_size,
            inv_sqrt_bc2: h.inv_sqrt_bc2,
            grad_scale: h.grad_scale,
        })
    }
}

/// Op code and parameters of a unary kernel: codes follow `Unary` in declaration order
/// (Neg 0 … Clamp 19); `a, b` are Affine mul/add, Powf's exponent, Clamp's bounds.
pub fn unary_code(op: Unary) -> (u32, f32, f32) {
    match op {
        Unary::Neg => (0, 0.0, 0.0),
        Unary::Exp => (1, 0.0, 0.0),
        Unary::Log => (2, 0.0, 0.0),
        Unary::Sqrt => (3, 0.0, 0.0),
        Unary::Rsqrt => (4, 0.0, 0.0),
        Unary::Recip => (5, 0.0, 0.0),
        Unary::Abs => (6, 0.0, 0.0),
        Unary::Square => (7, 0.0, 0.0),
        Unary::Tanh => (8, 0.0, 0.0),
        Unary::Sigmoid => (9, 0.0, 0.0),
        Unary::Erf => (10, 0.0, 0.0),
        Unary::Relu => (11, 0.0, 0.0),
        Unary::Gelu => (12, 0.0, 0.0),
        Unary::Silu => (13, 0.0, 0.0),
        Unary::Softplus => (14, 0.0, 0.0),
        Unary::Sin => (15, 0.0, 0.0),
        Unary::Cos => (16, 0.0, 0.0),
        Unary::Affine { mul, add } => (17, mul, add),
        Unary::Powf(e) => (18, e, 0.0),
        Unary::Clamp { min, max } => (19, min, max),
    }
}

/// Op code of a binary kernel (`Binary` in declaration order, Add 0 … Eq 9).
pub fn binary_code(op: Binary) -> u32 {
    match op {
        Binary::Add => 0,
        Binary::Sub => 1,
        Binary::Mul => 2,
        Binary::Div => 3,
        Binary::Max => 4,
        Binary::Min => 5,
        Binary::Pow => 6,
        Binary::Gt => 7,
        Binary::Ge => 8,
        Binary::Eq => 9,
    }
}

/// Strides of `from` broadcast to `to` (right-aligned; 0 on broadcast axes).
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let s = shape::strides(from);
    let pad = to.len() - from.len();
    (0..to.len()).map(|i| if i < pad || from[i - pad] == 1 { 0 } else { s[i - pad] }).collect()
}

/// Rejects an id `>= rows`.
pub fn check_ids(op: &str, ids: &[u32], rows: usize) -> Result<()> {
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
        return Err(Error::InvalidArgument(format!("{op}: id {bad} out of range for {rows} rows")));
    }
    Ok(())
}

/// The index of a deterministic scatter-add: `(starts, order)`, `starts` (`rows + 1`) the CSR
/// offsets of each id's positions and `order` the positions grouped by id, increasing within
/// each id (the CPU's summation order).
pub fn scatter_csr(ids: &[u32], rows: usize) -> (Vec<u32>, Vec<u32>) {
    let mut starts = vec![0u32; rows + 1];
    for &i in ids {
        starts[i as usize + 1] += 1;
    }
    for r in 0..rows {
        starts[r + 1] += starts[r];
    }
    let mut fill = starts.clone();
    let mut order = vec![0u32; ids.len()];
    for (pos, &i) in ids.iter().enumerate() {
        order[fill[i as usize] as usize] = pos as u32;
        fill[i as usize] += 1;
    }
    (starts, order)
}

/// Where the rows of one attention operand live: `[base, batch stride, head stride, row
/// stride]` in elements; row `row` of head `bh = b·H + h` starts at `base + b·sb + h·sh + row·rs`.
pub type Layout = [usize; 4];

/// The geometry of one attention call: `bh` heads (`b·H`), `Sq` queries, `Sk` keys, widths
/// `D` (q, k) and `Dv` (v, o), and where the q, k, v and o (= dout) rows live.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnGeom {
    /// Packed `qkv` (true) or separate contiguous q, k, v.
    pub packed: bool,
    /// Batch × heads.
    pub bh: usize,
    /// Heads `H` (1 for contiguous tensors).
    pub heads: usize,
    /// Queries.
    pub sq: usize,
    /// Keys.
    pub sk: usize,
    /// Width of q and k.
    pub d: usize,
    /// Width of v and o.
    pub dv: usize,
    /// Causal mask.
    pub causal: bool,
    /// Score scale.
    pub scale: f32,
    /// Rows of q (and dq).
    pub q: Layout,
    /// Rows of k (and dk).
    pub k: Layout,
    /// Rows of v (and dv).
    pub v: Layout,
    /// Rows of o (and dout).
    pub o: Layout,
}

impl AttnGeom {
    /// Contiguous `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`.
    pub fn plain(q: &[usize], k: &[usize], v: &[usize], causal: bool, scale: f32) -> Result<Self> {
        let r = q.len();
        if r < 2 || k.len() != r || v.len() != r {
            return Err(Error::InvalidArgument("attention needs q, k, v of one rank >= 2".into()));
        }
        let (sq, d, sk, dv) = (q[r - 2], q[r - 1], k[r - 2], v[r - 1]);
        if sk == 0 && sq > 0 {
            return Err(Error::InvalidArgument("attention needs at least one key".into()));
        }
        if causal && sk < sq {
            return Err(Error::InvalidArgument(format!("causal attention needs Sk >= Sq, got {sk} < {sq}")));
        }
        Ok(Self {
            packed: false,
            bh: shape::numel(&q[..r - 2]),
            heads: 1,
            sq,
            sk,
            d,
            dv,
            causal,
            scale,
            q: [0, sq * d, 0, d],
            k: [0, sk * d, 0, d],
            v: [0, sk * dv, 0, dv],
            o: [0, sq * dv, 0, dv],
        })
    }

    /// Packed `qkv: [B, S, 3, H, Dh]` with `o: [B, S, H, Dh]`.
    pub fn packed(qkv: &[usize], spec: &AttnSpec) -> Result<Self> {
        let bad = || Error::InvalidArgument(format!("self-attention needs qkv [B, S, 3, H, Dh], got {qkv:?}"));
        let [b, s, three, h, dh] = qkv[..] else { return Err(bad()) };
        if three != 3 {
            return Err(bad());
        }
        let row = 3 * h * dh;
        Ok(Self {
            packed: true,
            bh: b * h,
            heads: h,
            sq: s,
            sk: s,
            d: dh,
            dv: dh,
            causal: spec.causal,
            scale: spec.scale,
            q: [0, s * row, dh, row],
            k: [h * dh, s * row, dh, row],
            v: [2 * h * dh, s * row, dh, row],
            o: [0, s * h * dh, dh, h * dh],
        })
    }

    /// Shape of the dropout mask of a packed call, `[B, H, S, S]`.
    pub fn mask_shape(&self) -> [usize; 4] {
        [self.bh / self.heads, self.heads, self.sq, self.sk]
    }

    /// Query rows `bh·Sq`.
    pub fn rows(&self) -> usize {
        self.bh * self.sq
    }

    /// Parameters of the row kernels (`attention`, `attention_bwd`).
    pub fn params(&self, mask: bool) -> Result<AttnParams> {
        let layout = |l: &Layout| -> Result<[u32; 4]> {
            Ok([u32_of(l[0], "offset")?, u32_of(l[1], "offset")?, u32_of(l[2], "offset")?, u32_of(l[3], "offset")?])
        };
        Ok(AttnParams {
            rows: u32_of(self.rows(), "rows")?,
            sq: u32_of(self.sq, "queries")?,
            sk: u32_of(self.sk, "keys")?,
            d: u32_of(self.d, "width")?,
            heads: u32_of(self.heads, "heads")?,
            causal: self.causal as u32,
            scale: self.scale,
            has_mask: mask as u32,
            q: layout(&self.q)?,
            k: layout(&self.k)?,
            v: layout(&self.v)?,
            o: layout(&self.o)?,
            dv: u32_of(self.dv, "width")?,
        })
    }

    /// Parameters of `attention_apply` (`out = A·x`, or `Aᵀ·x` when `trans`, per head, `A`
    /// the `[Sq, Sk]` matrices at `a_off`); one thread per output element, `total` of them.
    pub fn apply_params(
        &self,
        a_off: usize,
        trans: bool,
        x: &Layout,
        out: &Layout,
        width: usize,
    ) -> Result<AttnApplyParams> {
        let rows = if trans { self.sk } else { self.sq };
        let layout = |l: &Layout| -> Result<[u32; 4]> {
            Ok([u32_of(l[0], "offset")?, u32_of(l[1], "offset")?, u32_of(l[2], "offset")?, u32_of(l[3], "offset")?])
        };
        Ok(AttnApplyParams {
            total: u32_of(self.bh * rows * width, "elements")?,
            rows: u32_of(rows, "rows")?,
            width: u32_of(width, "width")?,
            heads: u32_of(self.heads, "heads")?,
            trans: trans as u32,
            sq: u32_of(self.sq, "queries")?,
            sk: u32_of(self.sk, "keys")?,
            a_off: u32_of(a_off, "offset")?,
            x: layout(x)?,
            dst: layout(out)?,
        })
    }

    /// Shapes of `(o, lse)` for the query shape `q` (the `qkv` shape when packed).
    pub fn out_shapes(&self, q: &[usize]) -> (Vec<usize>, Vec<usize>) {
        if self.packed {
            let b = self.bh / self.heads;
            (vec![b, self.sq, self.heads, self.dv], vec![b, self.heads, self.sq, 1])
        } else {
            let lead = &q[..q.len() - 1];
            let mut o = lead.to_vec();
            o.push(self.dv);
            let mut l = lead.to_vec();
            l.push(1);
            (o, l)
        }
    }

    /// Shapes of `(dk, dv)` of a plain call for the key and value shapes.
    pub fn grad_shapes(&self, k: &[usize], v: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let with = |t: &[usize], w: usize| {
            let mut s = t[..t.len() - 2].to_vec();
            s.extend([self.sk, w]);
            s
        };
        (with(k, self.d), with(v, self.dv))
    }
}

/// How a kernel's threads are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// One thread per item, `n` items (the backend picks the workgroup or block size).
    Items(usize),
    /// One workgroup (WGSL, 64 threads) or block (CUDA, 128 threads) per row, `n` rows.
    Rows(usize),
}

/// What the shared host code of the fused GPU kernels (attention below, the colony in
/// [`crate::cell::kernel`]) needs from a GPU backend: scratch tensors, launching a kernel by
/// name, and copying words between tensors.
pub trait GpuKernels: Backend {
    /// A tensor of shape `[n]` whose contents are unspecified (every kernel writes all of
    /// its output).
    fn alloc(dev: &Self::Device, n: usize) -> Result<Self::Tensor>;

    /// Launches kernel `name` with `bufs` in the kernel's buffer order and `params` (which must
    /// be the kernel's parameter struct), over `grid`.
    fn launch<P: KernelParams>(
        dev: &Self::Device,
        name: &'static str,
        bufs: &[&Self::Tensor],
        params: &P,
        grid: Grid,
    ) -> Result<()>;

    /// Copies `n` words from `src[src_at..]` to `dst[dst_at..]`.
    fn copy_words(src: &Self::Tensor, src_at: usize, dst: &Self::Tensor, dst_at: usize, n: usize) -> Result<()>;
}

/// Attention `(o, lse)` of contiguous `q: [..., Sq, D]`, `k: [..., Sk, D]`, `v: [..., Sk, Dv]`
/// through the kernels `attention` and `attention_apply` ([`super::NnOps::attention_fwd`]).
pub fn attention_fwd<B: GpuKernels>(q: T<B>, k: T<B>, v: T<B>, causal: bool, scale: f32) -> Result<(T<B>, T<B>)> {
    let g = AttnGeom::plain(B::shape(&q), B::shape(&k), B::shape(&v), causal, scale)?;
    attn_forward::<B>(&g, &q, &k, &v, None)
}

/// `(dq, dk, dv)` of [`attention_fwd`] for the output gradient `dout`, from the saved `lse`
/// ([`super::NnOps::attention_bwd`]).
pub fn attention_bwd<B: GpuKernels>(
    q: T<B>,
    k: T<B>,
    v: T<B>,
    lse: T<B>,
    dout: T<B>,
    causal: bool,
    scale: f32,
) -> Result<(T<B>, T<B>, T<B>)> {
    let g = AttnGeom::plain(B::shape(&q), B::shape(&k), B::shape(&v), causal, scale)?;
    let dev = B::device(&q);
    let dq = B::alloc(&dev, g.bh * g.sq * g.d)?;
    let dk = B::alloc(&dev, g.bh * g.sk * g.d)?;
    let dv = B::alloc(&dev, g.bh * g.sk * g.dv)?;
    attn_backward::<B>(&g, &q, &k, &v, &lse, &dout, None, [&dq, &dk, &dv])?;
    let (dk_shape, dv_shape) = g.grad_shapes(B::shape(&k), B::shape(&v));
    Ok((B::reshape(dq, B::shape(&q))?, B::reshape(dk, &dk_shape)?, B::reshape(dv, &dv_shape)?))
}

/// Packed self-attention `(o, lse)` of `qkv: [B, S, 3, H, Dh]` with optional dropout
/// ([`super::NnOps::self_attention_fwd`]).
pub fn self_attention_fwd<B: GpuKernels>(qkv: T<B>, spec: &AttnSpec) -> Result<(T<B>, T<B>)> {
    let g = AttnGeom::packed(B::shape(&qkv), spec)?;
    let mask = packed_mask::<B>(&g, spec, &B::device(&qkv))?;
    attn_forward::<B>(&g, &qkv, &qkv, &qkv, mask.as_ref())
}

/// `dqkv` of [`self_attention_fwd`] for the output gradient `dout`, from the saved `lse`
/// ([`super::NnOps::self_attention_bwd`]).
pub fn self_attention_bwd<B: GpuKernels>(qkv: T<B>, lse: T<B>, dout: T<B>, spec: &AttnSpec) -> Result<T<B>> {
    let g = AttnGeom::packed(B::shape(&qkv), spec)?;
    let dev = B::device(&qkv);
    let mask = packed_mask::<B>(&g, spec, &dev)?;
    let dqkv = B::alloc(&dev, shape::numel(B::shape(&qkv)))?;
    attn_backward::<B>(&g, &qkv, &qkv, &qkv, &lse, &dout, mask.as_ref(), [&dqkv, &dqkv, &dqkv])?;
    B::reshape(dqkv, B::shape(&qkv))
}

/// The dropout mask of a packed attention call (`None` without dropout).
fn packed_mask<B: GpuKernels>(g: &AttnGeom, spec: &AttnSpec, dev: &B::Device) -> Result<Option<T<B>>> {
    match &spec.dropout {
        Some(dr) if dr.p > 0.0 => Ok(Some(attention_dropout_mask::<B>(dr, g.mask_shape(), dev)?)),
        _ => Ok(None),
    }
}

/// `out = A·x` (or `Aᵀ·x`) per head, `A` the `[Sq, Sk]` matrices at `a_off` in `a`.
fn attn_apply<B: GpuKernels>(
    g: &AttnGeom,
    a: &T<B>,
    a_off: usize,
    trans: bool,
    x: (&T<B>, &Layout),
    out: (&T<B>, &Layout),
    width: usize,
) -> Result<()> {
    let p = g.apply_params(a_off, trans, x.1, out.1, width)?;
    B::launch(&B::device(a), "attention_apply", &[a, x.0, out.0], &p, Grid::Items(p.total as usize))
}

/// `(o, lse)`: probabilities and lse per query row, then `o = (P⊙m)·v`.
fn attn_forward<B: GpuKernels>(
    g: &AttnGeom,
    q: &T<B>,
    k: &T<B>,
    v: &T<B>,
    mask: Option<&T<B>>,
) -> Result<(T<B>, T<B>)> {
    let dev = B::device(q);
    let rows = g.rows();
    let (o, lse) = (B::alloc(&dev, rows * g.dv)?, B::alloc(&dev, rows)?);
    if rows > 0 && g.dv > 0 {
        let pr = B::alloc(&dev, rows * g.sk)?;
        let m = mask.unwrap_or(q); // not read without dropout
        B::launch(&dev, "attention", &[q, k, m, &pr, &lse], &g.params(mask.is_some())?, Grid::Rows(rows))?;
        attn_apply::<B>(g, &pr, 0, false, (v, &g.v), (&o, &g.o), g.dv)?;
    }
    let (o_shape, lse_shape) = g.out_shapes(B::shape(q));
    Ok((B::reshape(o, &o_shape)?, B::reshape(lse, &lse_shape)?))
}

/// Writes `dq, dk, dv` into `out` (in the q, k, v layouts; one tensor thrice for packed).
#[allow(clippy::too_many_arguments)]
fn attn_backward<B: GpuKernels>(
    g: &AttnGeom,
    q: &T<B>,
    k: &T<B>,
    v: &T<B>,
    lse: &T<B>,
    dout: &T<B>,
    mask: Option<&T<B>>,
    out: [&T<B>; 3],
) -> Result<()> {
    let dev = B::device(q);
    let rows = g.rows();
    if rows == 0 || g.sk == 0 {
        return Ok(());
    }
    let n = rows * g.sk;
    let pd = B::alloc(&dev, 2 * n)?;
    let m = mask.unwrap_or(q); // not read without dropout
    let bufs = [q, k, v, dout, lse, m, &pd];
    B::launch(&dev, "attention_bwd", &bufs, &g.params(mask.is_some())?, Grid::Rows(rows))?;
    if g.dv > 0 {
        attn_apply::<B>(g, &pd, 0, true, (dout, &g.o), (out[2], &g.v), g.dv)?;
    }
    if g.d > 0 {
        attn_apply::<B>(g, &pd, n, false, (k, &g.k), (out[0], &g.q), g.d)?;
        attn_apply::<B>(g, &pd, n, true, (q, &g.q), (out[1], &g.k), g.d)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::kernel_params! {
        /// A test struct of every field kind.
        struct Mixed {
            /// A u32.
            n: u32,
            /// An f32.
            scale: f32,
            /// An i32.
            delta: i32,
            /// An array.
            at: [u32; 3],
            /// A float array.
            w: [f32; 2],
        }
    }

    #[test]
    fn words_are_the_fields_in_order() {
        let p = Mixed { n: 7, scale: -1.5, delta: -2, at: [1, 2, 3], w: [0.25, 4.0] };
        let words = p.words();
        assert_eq!(words, [7, (-1.5f32).to_bits(), (-2i32) as u32, 1, 2, 3, 0.25f32.to_bits(), 4.0f32.to_bits()]);
        assert_eq!(4 * words.len(), core::mem::size_of::<Mixed>());
    }

    #[test]
    fn layout_follows_the_rust_definition() {
        let l = Mixed::LAYOUT;
        assert_eq!(l.name, "Mixed");
        assert_eq!(l.size, 32);
        let offsets: Vec<(&str, usize)> = l.fields.iter().map(|f| (f.name, f.offset)).collect();
        assert_eq!(offsets, [("n", 0), ("scale", 4), ("delta", 8), ("at", 12), ("w", 24)]);
        assert_eq!(l.fields[3].len, Some(3));
        assert_eq!(l.fields[1].kind, ParamKind::F32);
    }

    #[test]
    fn wgsl_and_c_declarations() {
        assert_eq!(
            Mixed::wgsl(),
            "struct Mixed {\n    n: u32,\n    scale: f32,\n    delta: i32,\n    at: array<u32, 3>,\n    w: array<f32, 2>,\n}\n"
        );
        let c = Mixed::cuda();
        assert!(c.contains(
            "struct Mixed {\n    unsigned int n;\n    float scale;\n    int delta;\n    unsigned int at[3];\n    float w[2];\n};\n"
        ));
        assert!(c.contains("static_assert(sizeof(Mixed) == 32, "));
        assert!(c.contains("static_assert(offsetof(Mixed, w) == 24, "));
    }

    #[test]
    fn copy_and_binary_params_pad_to_the_rank_limit() {
        let p = CopyParams::new(&[2, 3], 1, &[3, 1], 0, &[1, 2]).unwrap();
        assert_eq!((p.n, p.rank, p.src_base, p.dst_base), (6, 2, 1, 0));
        assert_eq!(
            (&p.shape[..3], &p.src_strides[..3], &p.dst_strides[..3]),
            (&[2, 3, 0][..], &[3, 1, 0][..], &[1, 2, 0][..])
        );
        let p = BinaryParams::new(Binary::Mul, &[2, 3], &[3], &[2, 1]).unwrap();
        assert_eq!((p.n, p.op, p.rank), (6, 2, 2));
        assert_eq!((&p.a_strides[..2], &p.b_strides[..2]), (&[0, 1][..], &[1, 0][..]));
        let deep = vec![1; MAX_RANK + 1];
        assert!(CopyParams::new(&deep, 0, &deep, 0, &deep).is_err());
    }
}
