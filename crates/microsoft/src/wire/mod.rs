//! Serde types that mirror Microsoft's JSON exactly (field names, nullability, the casing and type
//! differences the reference records). Conversions into Rampart's model live in [`crate::convert`].

pub mod arm;
pub mod entra;
pub(crate) mod lenient;
pub mod mde;
