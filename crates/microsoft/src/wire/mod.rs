//! Serde types that mirror Microsoft's JSON exactly (field names, nullability, the casing and type
//! differences the reference records). Conversions into Rampart's model live in `convert` and `convert_arm`.

pub mod arm;
pub mod entra;
pub(crate) mod lenient;
pub mod mde;
