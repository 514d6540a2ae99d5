//! Command-line tools beside `serve`: `replay` runs a channel plugin over recorded provider
//! requests without a server or storage.

pub mod replay;
