//! The apply journal (placeholder until written below).
