//! tmp
pub mod jwt;
