pub mod bench;
pub mod cleanup;
pub mod doctor;
pub mod explain;
pub mod lab;
pub mod trace;
