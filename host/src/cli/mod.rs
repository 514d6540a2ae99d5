//! Command-line tools beside `serve`: `replay` runs a channel plugin over recorded provider
//! requests without a server or storage; `plugins` lists and inspects plugins; `new` starts a
//! plugin crate; `redrive` asks a running host to redrive the webhooks a channel kept;
//! `simulate` runs a candidate router over a queue's recorded decisions.

pub mod admin;
pub mod golden;
pub mod plugins;
pub mod redrive;
pub mod replay;
pub mod scaffold;
pub mod simulate;
