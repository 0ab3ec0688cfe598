pub mod identity;
pub mod rules;
