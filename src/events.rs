//! Room events now live in [`crate::domain::events`]; this path stays for existing imports.

pub use crate::domain::events::*;
