//! Restoring archived paths: the restoration policy ([`policy`]), cost and time estimates
//! per retrieval tier ([`estimate`]) and the demand-driven proposal ([`proposal`]), all
//! pure but for reading the policy and writing and reading the proposal artifact.
//!
//! Executing a proposal (RestoreObject, polling `x-amz-restore`, republishing NARs before
//! narinfos and dependencies before dependents) needs the apply engine and is not here yet.

pub mod artifact;
pub mod catalog;
pub mod estimate;
pub mod order;
pub mod policy;
pub mod proposal;
pub mod request;
pub mod text;

pub use estimate::Tier;
pub use policy::RestorePolicy;

#[cfg(test)]
mod tests;
