//! keepalived configuration: tokens (`lexer`), statement tree (`tree`), typed model (`model`)
//! and the keyword interpreter (`parse`).

pub mod lexer;
pub mod model;
pub mod parse;
pub mod tree;
