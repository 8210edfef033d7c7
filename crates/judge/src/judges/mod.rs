//! The judges: a vision endpoint, the local model, a task's rule, a person.

pub mod endpoint;
pub mod local;
pub mod person;
pub mod rule;
