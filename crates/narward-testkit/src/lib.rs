//! Helpers shared by narward's tests and by `narward-bench`. Not part of narward itself.
//!
//! - [`fault_proxy`]: an HTTP proxy between narward and a local S3 server (moto) that
//!   throttles (`503 SlowDown`, optionally above a token-bucket rate), fails (`500`),
//!   resets connections and loses answers, and logs the requests it saw.

pub mod fault_proxy;
