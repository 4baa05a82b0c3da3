//! From an error to the process's exit class: the first classified error in its chain, a
//! [`Failure`] or one of the typed errors of the lower layers (each says its own class through
//! [`Classify`]). This is the one place that lists the typed errors; everything else only
//! returns them.

use crate::config::ConfigError;
use crate::error::{Class, Classify, Failure};
use crate::source::process::ProcessError;
use crate::source::tar::TarError;
use crate::store::upload::ReadError;
use crate::store::StoreError;

/// The class of an error: the first classified error found in its chain (`Internal`: a bug).
pub fn class_of(err: &anyhow::Error) -> Class {
    err.chain().find_map(class_of_one).unwrap_or(Class::Internal)
}

fn class_of_one(cause: &(dyn std::error::Error + 'static)) -> Option<Class> {
    fn typed<E: Classify + std::error::Error + 'static>(cause: &(dyn std::error::Error + 'static)) -> Option<Class> {
        cause.downcast_ref::<E>().map(Classify::class)
    }
    cause
        .downcast_ref::<Failure>()
        .map(|f| f.class)
        .or_else(|| typed::<StoreError>(cause))
        .or_else(|| typed::<ReadError>(cause))
        .or_else(|| typed::<ProcessError>(cause))
        .or_else(|| typed::<TarError>(cause))
        .or_else(|| typed::<ConfigError>(cause))
}
