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

#[cfg(test)]
mod tests {
    use super::*;
    use naga::{AddressSpace, ArraySize, ScalarKind, StorageAccess, TypeInner};
    use protocell_core::backend::kernel_abi::ParamKind;

    /// Every pipeline's full source (generated parameter struct + kernel file) parses and
    /// validates with naga, wgpu's shader compiler, and binds the struct as `p`, read-only, at
    /// its last binding; the struct naga lays out has the Rust definition's size and each
    /// member its name, type and offset (as `offset_of!` gives them).
    #[test]
    fn every_kernel_parses_with_its_params_laid_out_as_in_rust() {
        let mut names = std::collections::HashSet::new();
        for k in KERNELS {
            let (name, layout) = (k.name, k.params);
            assert!(names.insert(name), "two pipelines are called {name}");
            let src = k.source();
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("kernel {name} does not parse:\n{}", e.emit_to_string(&src)));
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default())
                .validate(&module)
                .unwrap_or_else(|e| panic!("kernel {name} does not validate:\n{}", e.emit_to_string(&src)));

            let (handle, ty) = module
                .types
                .iter()
                .find(|(_, t)| t.name.as_deref() == Some(layout.name))
                .unwrap_or_else(|| panic!("kernel {name}: no struct {}", layout.name));
            let TypeInner::Struct { members, span } = &ty.inner else {
                panic!("kernel {name}: {} is not a struct", layout.name)
            };
            assert_eq!(*span as usize, layout.size, "kernel {name}: size of {}", layout.name);
            assert_eq!(members.len(), layout.fields.len(), "kernel {name}: fields of {}", layout.name);
            for (m, f) in members.iter().zip(layout.fields) {
                let what = format!("kernel {name}: {}::{}", layout.name, f.name);
                assert_eq!(m.name.as_deref(), Some(f.name), "{what}: name");
                assert_eq!(m.offset as usize, f.offset, "{what}: offset");
                assert!(!f.name.starts_with("gl"), "{what}: GLSL reserves the gl prefix");
                let scalar = match (&module.types[m.ty].inner, f.len) {
                    (TypeInner::Scalar(s), None) => *s,
                    (TypeInner::Array { base, size: ArraySize::Constant(n), stride }, Some(len)) => {
                        assert_eq!((n.get() as usize, *stride), (len, 4), "{what}: length and stride");
                        let TypeInner::Scalar(s) = module.types[*base].inner else { panic!("{what}: element type") };
                        s
                    }
                    (t, len) => panic!("{what}: naga type {t:?} for a Rust field of length {len:?}"),
                };
                let kind = match f.kind {
                    ParamKind::U32 => ScalarKind::Uint,
                    ParamKind::F32 => ScalarKind::Float,
                    ParamKind::I32 => ScalarKind::Sint,
                };
                assert_eq!((scalar.kind, scalar.width), (kind, 4), "{what}: scalar type");
            }

            let last = module.global_variables.iter().filter_map(|(_, g)| g.binding.as_ref()).map(|b| b.binding).max();
            let p = module
                .global_variables
                .iter()
                .map(|(_, g)| g)
                .find(|g| g.name.as_deref() == Some("p"))
                .unwrap_or_else(|| panic!("kernel {name}: no `p`"));
            assert_eq!(p.ty, handle, "kernel {name}: `p` is not a {}", layout.name);
            assert_eq!(p.space, AddressSpace::Storage { access: StorageAccess::LOAD }, "kernel {name}: `p` space");
            let b = p.binding.as_ref().unwrap_or_else(|| panic!("kernel {name}: `p` is not bound"));
            assert_eq!((b.group, Some(b.binding)), (0, last), "kernel {name}: `p` is not bound last");
        }
    }

    /// Every `.wgsl` file of `kernels/` is part of some pipeline (so the test above covers it).
    #[test]
    fn every_kernel_file_is_in_a_pipeline() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(KERNELS.iter().any(|k| k.body.contains(&text)), "{} is in no pipeline", path.display());
        }
    }
}
