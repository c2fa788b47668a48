//! Restoring archived paths: the restoration policy ([`policy`]), cost and time estimates
//! per retrieval tier ([`estimate`]) and the demand-driven proposal ([`proposal`]), all
//! pure but for reading the policy and writing and reading the proposal artifact.
//!
//! Executing a restore ([`exec`], edge, any store): RestoreObject once per cold NAR,
//! journaled ([`journal`]), polling `x-amz-restore`, republishing NARs before narinfos and
//! dependencies before dependents ([`order`]).

pub mod artifact;
pub mod catalog;
pub mod estimate;
pub mod exec;
pub mod journal;
pub mod order;
pub mod policy;
pub mod proposal;
pub mod request;
pub mod text;

pub use estimate::Tier;
pub use policy::RestorePolicy;

#[cfg(test)]
mod tests;
