//! ringway: a thread-per-core HTTP/1.1 API gateway. The binary (`main.rs`) is a thin CLI
//! over this library; see DESIGN in the README for the module map.

pub mod compiled;
pub mod config;
pub mod http;
