//! Every WGSL pipeline of the backend: its name, its kernel source (`kernels/*.wgsl`, with the
//! shared helper files it needs) and its parameter struct, whose WGSL declaration is generated
//! from the Rust definition in `protocell-core` and prepended when the pipeline is built.
use protocell_core::backend::kernel_abi::{
    AdamWParams, AttnApplyParams, AttnParams, BinaryParams, CopyParams, CrossEntropyBwdParams, FillParams, IndexParams,
    KernelParams, LayerNormParams, MatmulParams, NormBwdParams, ParamLayout, RandomParams, ReduceParams, RowParams,
    UnaryParams,
};
use protocell_core::cell::kernel::ColonyParams;
use protocell_core::error::{Error, Result};

/// A WGSL compute pipeline: entry point `main` of `body`, which binds its buffers at
/// `@group(0) @binding(0..)` and then its parameter struct as
/// `var<storage, read> p: <params.name>` (declared by the generated prefix, not by `body`).
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Pipeline name (the cache key).
    pub name: &'static str,
    /// The kernel source after the parameter struct's declaration.
    pub body: &'static str,
    /// The parameter struct.
    pub params: &'static ParamLayout,
}

impl Kernel {
    /// The full WGSL source: the parameter struct's declaration, then `body`.
    pub fn source(&self) -> String {
        format!("{}\n{}", self.params.wgsl(), self.body)
    }
}

macro_rules! kernels {
    ($($(#[$doc:meta])* $konst:ident = $name:literal, $params:ty, $body:expr;)*) => {
        $(
            $(#[$doc])*
            pub(crate) const $konst: Kernel =
                Kernel { name: $name, body: $body, params: &<$params as KernelParams>::LAYOUT };
        )*
        /// Every pipeline of the backend.
        pub const KERNELS: &[Kernel] = &[$($konst),*];
    };
}

macro_rules! wgsl {
    ($($file:literal),*) => {
        concat!($(include_str!(concat!("../kernels/", $file, ".wgsl"))),*)
    };
}

kernels! {
    FILL = "fill", FillParams, wgsl!("fill");
    UNARY = "unary", UnaryParams, wgsl!("math", "unary");
    BINARY = "binary", BinaryParams, wgsl!("math", "binary");
    COPY = "copy", CopyParams, wgsl!("copy");
    REDUCE = "reduce", ReduceParams, wgsl!("reduce");
    MATMUL = "matmul", MatmulParams, wgsl!("matmul");
    GATHER = "gather", IndexParams, wgsl!("gather");
    SCATTER = "scatter", IndexParams, wgsl!("scatter");
    RANDOM = "random", RandomParams, wgsl!("random");
    SOFTMAX = "softmax", RowParams, wgsl!("rows", "softmax");
    CROSS_ENTROPY = "cross_entropy", RowParams, wgsl!("rows", "cross_entropy");
    CROSS_ENTROPY_BWD = "cross_entropy_bwd", CrossEntropyBwdParams, wgsl!("cross_entropy_bwd");
    ADAMW = "adamw", AdamWParams, wgsl!("adamw");
    LAYER_NORM = "layer_norm", LayerNormParams, wgsl!("rows", "layer_norm");
    LAYER_NORM_BWD = "layer_norm_bwd", NormBwdParams, wgsl!("rows", "layer_norm_bwd");
    LAYER_NORM_PARAMS = "layer_norm_params", NormBwdParams, wgsl!("layer_norm_params");
    ATTENTION = "attention", AttnParams, wgsl!("rows", "attn", "attention");
    ATTENTION_BWD = "attention_bwd", AttnParams, wgsl!("rows", "attn", "attention_bwd");
    ATTENTION_APPLY = "attention_apply", AttnApplyParams, wgsl!("attn", "attention_apply");
    COLONY_FWD = "colony_fwd", ColonyParams, wgsl!("colony", "colony_fwd");
    COLONY_BWD = "colony_bwd", ColonyParams, wgsl!("colony", "colony_bwd");
}

/// The pipeline called `name`.
pub(crate) fn by_name(name: &str) -> Result<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name).ok_or_else(|| Error::Backend(format!("no WGSL kernel {name}")))
}
