//! Bounded on-disk spool for batches the server could not take (to be built).
