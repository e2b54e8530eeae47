//! Error type shared by every protocell crate.
use alloc::string::String;

/// Every fallible protocell operation returns this error.
///
/// Variants name the class of failure; the message says what was wrong and,
/// where possible, what was expected instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Tensor shapes that do not fit the operation.
    #[error("shape mismatch in {op}: {msg}")]
    Shape {
        /// Operation that rejected its inputs.
        op: &'static str,
        /// What was wrong.
        msg: String,
    },
    /// An argument outside the operation's domain (index out of range, bad axis, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A configuration value out of range or unknown.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// NaN or infinity where a finite value is required.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A checkpoint that cannot be decoded or does not fit the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// Training or evaluation data that cannot be used.
    #[error("data: {0}")]
    Data(String),
    /// A failure inside a backend (device lost, out of memory, kernel error).
    #[error("backend: {0}")]
    Backend(String),
    /// A backend or device that is not present on this machine.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An input/output failure reported by a std layer.
    #[error("i/o: {0}")]
    Io(String),
}

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Builds an [`Error::Shape`] with a formatted message.
#[macro_export]
macro_rules! shape_err {
    ($op:expr, $($arg:tt)*) => {
        $crate::error::Error::Shape { op: $op, msg: alloc::format!($($arg)*) }
    };
}

/// Returns early with an [`Error::InvalidArgument`].
#[macro_export]
macro_rules! bail_arg {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::InvalidArgument(alloc::format!($($arg)*)))
    };
}
