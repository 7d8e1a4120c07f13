//! IDs: the ID table that maps ID bytes to slots (`table`), and batches of
//! IDs passed Arrow-style (`batch`). "Index" means the ANN index, not this.

pub(crate) mod batch;
pub(crate) mod table;
