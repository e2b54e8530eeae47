//! Parameters with identities, and the one visitor that walks them.
//!
//! Every trainable tensor of a model is a [`Param`]: a tensor plus a [`ParamId`] drawn from a
//! deterministic counter ([`ParamIds`]) that the model owns and checkpoints save. Ids are
//! handed out in visit order when a model is built and never reused or renumbered: removing
//! a parameter (a culled expert) leaves the others' ids as they were, and a parameter born
//! later gets the next unused id. Optimiser state is keyed by the id, so it follows a
//! parameter through structural edits; the dotted path (`blocks.0.attn.qkv.weight`) is for
//! display and for checkpoints' human-readable tables.
//!
//! A module lists its parameter fields once with [`module!`](crate::module), which writes
//! both walks of [`Module`] (shared and mutable); each walk calls a [`ParamVisitor`] with
//! `enter`/`exit` around every submodule, so a visitor can track paths, depth or ownership.
use super::Module;
use crate::backend::Backend;
use crate::tensor::Tensor;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

/// Stable identity of a parameter within its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ParamId(pub u64);

impl ParamId {
    /// The id of a parameter that no model has adopted yet.
    pub const UNASSIGNED: ParamId = ParamId(u64::MAX);

    /// True for [`ParamId::UNASSIGNED`].
    pub fn is_unassigned(self) -> bool {
        self == Self::UNASSIGNED
    }
}

impl fmt::Display for ParamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unassigned() {
            write!(f, "#unassigned")
        } else {
            write!(f, "#{}", self.0)
        }
    }
}

/// A trainable tensor and its identity. Dereferences to the tensor.
#[derive(Clone)]
pub struct Param<B: Backend> {
    id: ParamId,
    value: Tensor<B>,
}

impl<B: Backend> fmt::Debug for Param<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Param({}, {:?})", self.id, self.value.shape())
    }
}

impl<B: Backend> Param<B> {
    /// A parameter not yet adopted by a model (its model's [`ParamIds::assign`] gives it an id).
    pub fn new(value: Tensor<B>) -> Self {
        Self { id: ParamId::UNASSIGNED, value }
    }
    /// A parameter with a known id (restoring a checkpoint).
    pub fn with_id(id: ParamId, value: Tensor<B>) -> Self {
        Self { id, value }
    }
    /// Its identity.
    pub fn id(&self) -> ParamId {
        self.id
    }
    /// Its value.
    pub fn value(&self) -> &Tensor<B> {
        &self.value
    }
    /// Replaces the value (the identity stays).
    pub fn set(&mut self, value: Tensor<B>) {
        self.value = value;
    }
    /// Moves the value out, leaving `placeholder` in its place.
    pub fn replace(&mut self, placeholder: Tensor<B>) -> Tensor<B> {
        core::mem::replace(&mut self.value, placeholder)
    }
    /// The value, consuming the parameter.
    pub fn into_value(self) -> Tensor<B> {
        self.value
    }
    pub(crate) fn set_id(&mut self, id: ParamId) {
        self.id = id;
    }
}

impl<B: Backend> core::ops::Deref for Param<B> {
    type Target = Tensor<B>;
    fn deref(&self) -> &Tensor<B> {
        &self.value
    }
}

/// A tensor of model state that is not trained by gradients (Hebbian fast weights, traces,
/// running statistics): saved in checkpoints by path (role `Buffer`), walked by
/// [`Module::visit_buffers`], never seen by the optimiser. Dereferences to the tensor.
///
/// A forward pass may *stage* a new value (from `&self`); the trainer commits every staged
/// value after a successful optimiser step and discards them when the step fails, so a
/// buffer changes only with a step that went through.
pub struct Buffer<B: Backend> {
    value: Tensor<B>,
    staged: spin::Mutex<Option<Tensor<B>>>,
}

impl<B: Backend> Clone for Buffer<B> {
    fn clone(&self) -> Self {
        Self { value: self.value.clone(), staged: spin::Mutex::new(self.staged.lock().clone()) }
    }
}

impl<B: Backend> fmt::Debug for Buffer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer({:?}, staged: {})", self.value.shape(), self.staged.lock().is_some())
    }
}

impl<B: Backend> Buffer<B> {
    /// A buffer holding `value`.
    pub fn new(value: Tensor<B>) -> Self {
        Self { value, staged: spin::Mutex::new(None) }
    }
    /// Its committed value.
    pub fn value(&self) -> &Tensor<B> {
        &self.value
    }
    /// Replaces the committed value (and drops a staged one).
    pub fn set(&mut self, value: Tensor<B>) {
        self.value = value;
        *self.staged.get_mut() = None;
    }
    /// Stages `value` to become the buffer's value at the next [`Buffer::commit`].
    pub fn stage(&self, value: Tensor<B>) {
        *self.staged.lock() = Some(value);
    }
    /// The staged value, if any.
    pub fn staged(&self) -> Option<Tensor<B>> {
        self.staged.lock().clone()
    }
    /// Makes the staged value (if any) the value; returns whether there was one.
    pub fn commit(&mut self) -> bool {
        match self.staged.get_mut().take() {
            Some(v) => {
                self.value = v;
                true
            }
            None => false,
        }
    }
    /// Drops a staged value.
    pub fn discard(&mut self) {
        *self.staged.get_mut() = None;
    }
}

impl<B: Backend> core::ops::Deref for Buffer<B> {
    type Target = Tensor<B>;
    fn deref(&self) -> &Tensor<B> {
        &self.value
    }
}

/// The deterministic id counter a model owns: ids `0, 1, 2, …` in the order they are handed
/// out, never reused. Saved in checkpoints so that a resumed run hands out the same ids as an
/// uninterrupted one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamIds {
    next: u64,
}

impl ParamIds {
    /// A counter whose next id is `next` (restoring a checkpoint).
    pub fn starting_at(next: u64) -> Self {
        Self { next }
    }
    /// The id the next [`ParamIds::fresh`] returns.
    pub fn next(&self) -> u64 {
        self.next
    }
    /// A new id.
    pub fn fresh(&mut self) -> ParamId {
        let id = ParamId(self.next);
        self.next += 1;
        id
    }
    /// Gives a fresh id, in visit order, to every parameter of `m` that has none.
    pub fn assign<B: Backend, M: Module<B> + ?Sized>(&mut self, m: &mut M) {
        m.for_each_param_mut(&mut |_, p| {
            if p.id.is_unassigned() {
                p.id = self.fresh();
            }
        });
    }
    /// Makes sure the counter is past every id in use in `m` (after ids were set from a file).
    pub fn cover<B: Backend, M: Module<B> + ?Sized>(&mut self, m: &M) {
        m.for_each_param(&mut |_, p| {
            if !p.id.is_unassigned() && p.id.0 >= self.next {
                self.next = p.id.0 + 1;
            }
        });
    }
}

/// Walks the parameters of a module (shared access).
pub trait ParamVisitor<B: Backend> {
    /// Entering submodule (or list element) `name`.
    fn enter(&mut self, _name: &str) {}
    /// Leaving the submodule entered last.
    fn exit(&mut self) {}
    /// Parameter `name` of the current submodule.
    fn param(&mut self, name: &str, p: &Param<B>);
}

/// Walks the parameters of a module (mutable access).
pub trait ParamVisitorMut<B: Backend> {
    /// Entering submodule (or list element) `name`.
    fn enter(&mut self, _name: &str) {}
    /// Leaving the submodule entered last.
    fn exit(&mut self) {}
    /// Parameter `name` of the current submodule.
    fn param(&mut self, name: &str, p: &mut Param<B>);
}

/// Walks the buffers of a module (shared access).
pub trait BufferVisitor<B: Backend> {
    /// Entering submodule (or list element) `name`.
    fn enter(&mut self, _name: &str) {}
    /// Leaving the submodule entered last.
    fn exit(&mut self) {}
    /// Buffer `name` of the current submodule.
    fn buffer(&mut self, name: &str, b: &Buffer<B>);
}

/// Walks the buffers of a module (mutable access).
pub trait BufferVisitorMut<B: Backend> {
    /// Entering submodule (or list element) `name`.
    fn enter(&mut self, _name: &str) {}
    /// Leaving the submodule entered last.
    fn exit(&mut self) {}
    /// Buffer `name` of the current submodule.
    fn buffer(&mut self, name: &str, b: &mut Buffer<B>);
}

/// A field of a module that holds parameters or buffers: a [`Param`], a [`Buffer`], a
/// submodule, or an `Option`/`Vec` of them. [`module!`](crate::module) implements it for each
/// module it declares.
pub trait ModuleField<B: Backend> {
    /// Visits this field's parameters, the field called `name` in its parent.
    fn visit_field(&self, name: &str, v: &mut dyn ParamVisitor<B>);
    /// Visits this field's parameters mutably.
    fn visit_field_mut(&mut self, name: &str, v: &mut dyn ParamVisitorMut<B>);
    /// Visits this field's buffers.
    fn visit_field_buffers(&self, _name: &str, _v: &mut dyn BufferVisitor<B>) {}
    /// Visits this field's buffers mutably.
    fn visit_field_buffers_mut(&mut self, _name: &str, _v: &mut dyn BufferVisitorMut<B>) {}
}

impl<B: Backend> ModuleField<B> for Param<B> {
    fn visit_field(&self, name: &str, v: &mut dyn ParamVisitor<B>) {
        v.param(name, self);
    }
    fn visit_field_mut(&mut self, name: &str, v: &mut dyn ParamVisitorMut<B>) {
        v.param(name, self);
    }
}

impl<B: Backend> ModuleField<B> for Buffer<B> {
    fn visit_field(&self, _name: &str, _v: &mut dyn ParamVisitor<B>) {}
    fn visit_field_mut(&mut self, _name: &str, _v: &mut dyn ParamVisitorMut<B>) {}
    fn visit_field_buffers(&self, name: &str, v: &mut dyn BufferVisitor<B>) {
        v.buffer(name, self);
    }
    fn visit_field_buffers_mut(&mut self, name: &str, v: &mut dyn BufferVisitorMut<B>) {
        v.buffer(name, self);
    }
}

impl<B: Backend, T: ModuleField<B>> ModuleField<B> for Option<T> {
    fn visit_field(&self, name: &str, v: &mut dyn ParamVisitor<B>) {
        if let Some(t) = self {
            t.visit_field(name, v);
        }
    }
    fn visit_field_mut(&mut self, name: &str, v: &mut dyn ParamVisitorMut<B>) {
        if let Some(t) = self {
            t.visit_field_mut(name, v);
        }
    }
    fn visit_field_buffers(&self, name: &str, v: &mut dyn BufferVisitor<B>) {
        if let Some(t) = self {
            t.visit_field_buffers(name, v);
        }
    }
    fn visit_field_buffers_mut(&mut self, name: &str, v: &mut dyn BufferVisitorMut<B>) {
        if let Some(t) = self {
            t.visit_field_buffers_mut(name, v);
        }
    }
}

/// A list is a submodule whose elements are named `0, 1, …`.
impl<B: Backend, T: ModuleField<B>> ModuleField<B> for Vec<T> {
    fn visit_field(&self, name: &str, v: &mut dyn ParamVisitor<B>) {
        v.enter(name);
        for (i, t) in self.iter().enumerate() {
            t.visit_field(&alloc::format!("{i}"), v);
        }
        v.exit();
    }
    fn visit_field_mut(&mut self, name: &str, v: &mut dyn ParamVisitorMut<B>) {
        v.enter(name);
        for (i, t) in self.iter_mut().enumerate() {
            t.visit_field_mut(&alloc::format!("{i}"), v);
        }
        v.exit();
    }
    fn visit_field_buffers(&self, name: &str, v: &mut dyn BufferVisitor<B>) {
        v.enter(name);
        for (i, t) in self.iter().enumerate() {
            t.visit_field_buffers(&alloc::format!("{i}"), v);
        }
        v.exit();
    }
    fn visit_field_buffers_mut(&mut self, name: &str, v: &mut dyn BufferVisitorMut<B>) {
        v.enter(name);
        for (i, t) in self.iter_mut().enumerate() {
            t.visit_field_buffers_mut(&alloc::format!("{i}"), v);
        }
        v.exit();
    }
}

/// Tracks the dotted path of the current parameter for a closure.
pub(crate) struct Paths<F> {
    stack: Vec<usize>,
    path: String,
    pub(crate) f: F,
}

impl<F> Paths<F> {
    pub(crate) fn new(f: F) -> Self {
        Self { stack: Vec::new(), path: String::new(), f }
    }
    fn push(&mut self, name: &str) {
        self.stack.push(self.path.len());
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
    }
    fn pop(&mut self) {
        let n = self.stack.pop().unwrap_or(0);
        self.path.truncate(n);
    }
    fn with<R>(&mut self, name: &str, g: impl FnOnce(&str, &mut F) -> R) -> R {
        self.push(name);
        let r = g(&self.path, &mut self.f);
        self.pop();
        r
    }
}

impl<B: Backend, F: FnMut(&str, &Param<B>)> ParamVisitor<B> for Paths<F> {
    fn enter(&mut self, name: &str) {
        self.push(name);
    }
    fn exit(&mut self) {
        self.pop();
    }
    fn param(&mut self, name: &str, p: &Param<B>) {
        self.with(name, |path, f| f(path, p));
    }
}

impl<B: Backend, F: FnMut(&str, &Buffer<B>)> BufferVisitor<B> for Paths<F> {
    fn enter(&mut self, name: &str) {
        self.push(name);
    }
    fn exit(&mut self) {
        self.pop();
    }
    fn buffer(&mut self, name: &str, b: &Buffer<B>) {
        self.with(name, |path, f| f(path, b));
    }
}

impl<B: Backend, F: FnMut(&str, &mut Buffer<B>)> BufferVisitorMut<B> for Paths<F> {
    fn enter(&mut self, name: &str) {
        self.push(name);
    }
    fn exit(&mut self) {
        self.pop();
    }
    fn buffer(&mut self, name: &str, b: &mut Buffer<B>) {
        self.with(name, |path, f| f(path, b));
    }
}

impl<B: Backend, F: FnMut(&str, &mut Param<B>)> ParamVisitorMut<B> for Paths<F> {
    fn enter(&mut self, name: &str) {
        self.push(name);
    }
    fn exit(&mut self) {
        self.pop();
    }
    fn param(&mut self, name: &str, p: &mut Param<B>) {
        self.with(name, |path, f| f(path, p));
    }
}

/// Declares the parameter and buffer fields of a module once and implements [`Module`] (the
/// parameter and buffer walks) and [`ModuleField`] for it. Fields are listed in visit order;
/// `field => "name"` shows a field under another name in paths; fields not listed
/// (configuration, constants) are neither parameters nor buffers.
///
/// ```ignore
/// protocell_core::module!(LayerNorm { gamma => "weight", beta => "bias" });
/// protocell_core::module!(Gpt { wte, wpe, blocks, ln_f, head });
/// ```
#[macro_export]
macro_rules! module {
    ($ty:ident { $($field:ident $(=> $name:literal)?),* $(,)? }) => {
        impl<B: $crate::backend::Backend> $crate::nn::Module<B> for $ty<B> {
            fn visit_params(&self, _v: &mut dyn $crate::nn::ParamVisitor<B>) {
                $( $crate::nn::ModuleField::<B>::visit_field(
                    &self.$field, $crate::module!(@name $field $($name)?), _v); )*
            }
            fn visit_params_mut(&mut self, _v: &mut dyn $crate::nn::ParamVisitorMut<B>) {
                $( $crate::nn::ModuleField::<B>::visit_field_mut(
                    &mut self.$field, $crate::module!(@name $field $($name)?), _v); )*
            }
            fn visit_buffers(&self, _v: &mut dyn $crate::nn::BufferVisitor<B>) {
                $( $crate::nn::ModuleField::<B>::visit_field_buffers(
                    &self.$field, $crate::module!(@name $field $($name)?), _v); )*
            }
            fn visit_buffers_mut(&mut self, _v: &mut dyn $crate::nn::BufferVisitorMut<B>) {
                $( $crate::nn::ModuleField::<B>::visit_field_buffers_mut(
                    &mut self.$field, $crate::module!(@name $field $($name)?), _v); )*
            }
        }
        impl<B: $crate::backend::Backend> $crate::nn::ModuleField<B> for $ty<B> {
            fn visit_field(&self, name: &str, v: &mut dyn $crate::nn::ParamVisitor<B>) {
                v.enter(name);
                $crate::nn::Module::<B>::visit_params(self, v);
                v.exit();
            }
            fn visit_field_mut(&mut self, name: &str, v: &mut dyn $crate::nn::ParamVisitorMut<B>) {
                v.enter(name);
                $crate::nn::Module::<B>::visit_params_mut(self, v);
                v.exit();
            }
            fn visit_field_buffers(&self, name: &str, v: &mut dyn $crate::nn::BufferVisitor<B>) {
                v.enter(name);
                $crate::nn::Module::<B>::visit_buffers(self, v);
                v.exit();
            }
            fn visit_field_buffers_mut(&mut self, name: &str, v: &mut dyn $crate::nn::BufferVisitorMut<B>) {
                v.enter(name);
                $crate::nn::Module::<B>::visit_buffers_mut(self, v);
                v.exit();
            }
        }
    };
    (@name $field:ident $name:literal) => { $name };
    (@name $field:ident) => { stringify!($field) };
}
