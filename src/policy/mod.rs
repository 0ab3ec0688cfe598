pub mod identity;
pub mod ratelimit;
pub mod rules;
