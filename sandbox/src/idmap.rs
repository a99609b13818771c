//! idmap
#[derive(Debug, Clone)]
pub enum IdSource { Root { base: u32 }, Subordinate }
