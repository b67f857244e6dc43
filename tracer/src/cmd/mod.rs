pub mod lab;
pub mod trace;
